/**
 * The protocol between shim6d (client) and reapd (server) on a Unix stream socket: see
 * ipc/README.md.
 *
 *   import { IpcClient, IpcServer, validateMessage, IPC_VERSION } from '../ipc';
 */
export * from './messages';
export * from './framing';
export * from './server';
export * from './client';
