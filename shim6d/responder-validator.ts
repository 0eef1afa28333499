/**
 * The Responder Validator of R1 and R1bis (RFC 5533 sections 7.10 and 7.17): how a responder
 * answers an I1 (or an unknown tag) without keeping any state, and still recognises the I2
 * (or I2bis) that follows as the answer to an R1 it sent, to these locators.
 *
 * The validator is an HMAC-SHA256, truncated to 16 octets, keyed by a secret and computed
 * over the responder nonce and what the exchange must not change: the initiator's context
 * tag (or, for R1bis, the packet's tag), both ULIDs and both locators. The secret rotates
 * every `rotationMs`; the previous one is still accepted, so an I2 that answers an R1 sent
 * just before a rotation is valid for between one and two periods. The responder nonce's top
 * 16 bits name the secret's epoch, so a check needs one HMAC, not two. Pure: the clock and
 * the random source are injected.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { parseIPv6 } from '../protocol/address';

export const VALIDATOR_LENGTH = 16;

export interface ValidatorFields {
  /** I1/I2: the initiator context tag; R1bis/I2bis: the packet context tag. */
  tag: number;
  /** 0 for R1/I2, 1 for R1bis/I2bis: an R1 validator never passes for an I2bis. */
  kind: 0 | 1;
  initiatorUlid: string;
  responderUlid: string;
  /** The addresses the I1 (I2) came from and to. */
  initiatorLocator: string;
  responderLocator: string;
}

export interface ValidatorOptions {
  rotationMs: number;
  now: () => number;
  random?: (octets: number) => Buffer;
}

export class ResponderValidator {
  private epoch: number;
  private secret: Buffer;
  private previous: Buffer | undefined;
  private readonly random: (octets: number) => Buffer;

  constructor(private readonly options: ValidatorOptions) {
    if (!(options.rotationMs > 0)) throw new RangeError(`rotationMs must be positive: ${options.rotationMs}`);
    this.random = options.random ?? randomBytes;
    this.epoch = Math.floor(options.now() / options.rotationMs);
    this.secret = this.random(32);
  }

  /** Rotates as many times as the clock says (at most twice matters: older secrets are gone). */
  private rotate(): void {
    const epoch = Math.floor(this.options.now() / this.options.rotationMs);
    if (epoch === this.epoch) return;
    this.previous = epoch === this.epoch + 1 ? this.secret : undefined;
    this.secret = this.random(32);
    this.epoch = epoch;
  }

  /** A fresh responder nonce and the validator that goes with it. */
  issue(fields: ValidatorFields): { responderNonce: number; validator: Buffer } {
    this.rotate();
    const responderNonce = (((this.epoch & 0xffff) << 16) | this.random(2).readUInt16BE(0)) >>> 0;
    return { responderNonce, validator: this.compute(this.secret, responderNonce, fields) };
  }

  /** True if `validator` is the one issue() gave for this nonce and these fields, within two periods. */
  check(responderNonce: number, validator: Buffer, fields: ValidatorFields): boolean {
    this.rotate();
    const epoch = responderNonce >>> 16;
    let secret: Buffer | undefined;
    if (epoch === (this.epoch & 0xffff)) secret = this.secret;
    else if (epoch === ((this.epoch - 1) & 0xffff)) secret = this.previous;
    if (!secret || validator.length !== VALIDATOR_LENGTH) return false;
    const expected = this.compute(secret, responderNonce, fields);
    let diff = 0;
    for (let i = 0; i < VALIDATOR_LENGTH; i++) diff |= (expected[i] as number) ^ (validator[i] as number);
    return diff === 0;
  }

  private compute(secret: Buffer, responderNonce: number, f: ValidatorFields): Buffer {
    const head = Buffer.alloc(11);
    head.writeUInt32BE(responderNonce, 0);
    head.writeUIntBE(Math.floor(f.tag / 0x10000), 4, 4);
    head.writeUInt16BE(f.tag % 0x10000, 8);
    head[10] = f.kind;
    const h = createHmac('sha256', secret).update(head);
    for (const a of [f.initiatorUlid, f.responderUlid, f.initiatorLocator, f.responderLocator]) {
      const octets = parseIPv6(a);
      if (!octets) throw new RangeError(`not an IPv6 address: ${a}`);
      h.update(octets);
    }
    return h.digest().subarray(0, VALIDATOR_LENGTH);
  }
}
