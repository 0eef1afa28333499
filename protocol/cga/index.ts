/**
 * Secure locator sets for Shim6: CGAs (RFC 3972), HBA sets (RFC 5535) and the CGA
 * Signature of locator lists (RFC 5533). See README.md in this directory.
 */
export * from './params';
export * from './multi-prefix';
export * from './der';
export * from './hash';
export * from './modifier-search';
export * from './generate';
export * from './worker';
export * from './verify';
export * from './hba';
export * from './signature';
export * from './keys';
export * from './prefix';
export * from './hex';
export * from './config';
