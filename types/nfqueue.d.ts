// Types for nfqueue 0.3.2 (libnetfilter_queue binding), as far as shim6d uses it.
declare module 'nfqueue' {
  export const NF_DROP: number;
  export const NF_ACCEPT: number;

  export interface PacketInfo {
    len: number;
    id: number;
    nfmark: number;
    indev: number;
    outdev: number;
    indev_name: string;
    outdev_name: string;
  }

  export class NFQueue {
    opened: boolean;
    /** Binds queue `num`; `bufferBytes` is the netlink receive buffer. Throws TypeError on failure. */
    open(num: number, bufferBytes: number): void;
    /** Starts polling; the callback runs on the main thread, once per packet. */
    run(callback: (packet: NFQueuePacket) => void): void;
  }

  export interface NFQueuePacket {
    info: PacketInfo;
    /** A copy of the packet, starting at its IPv6 header. */
    payload: Buffer;
    /** `buffer`: accept this packet instead of the original. */
    setVerdict(verdict: number, mark?: number | null, buffer?: Buffer | null): void;
  }
}
