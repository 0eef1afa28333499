/**
 * The NFQUEUE adapter (nfqueue package, libnetfilter_queue): binds one queue and gives each
 * packet a verdict from a synchronous handler, at once. The handler must not throw (an
 * exception inside the native callback would abort the process); if it does anyway the
 * packet gets the queue's fallback verdict, the error is reported and counted, and the
 * queue goes on.
 *
 * The rules that feed the queues use --queue-bypass: while no process has the queue bound
 * (shim6d not started yet, or killed), the kernel accepts the packets instead of dropping
 * them. nfqueue cannot unbind; the queue is released when the process exits.
 */
import * as nfq from 'nfqueue';
import type { Verdict } from './data-plane';

export class PacketQueueError extends Error {
  override readonly name = 'PacketQueueError';
  constructor(
    readonly queue: number,
    message: string,
  ) {
    super(`NFQUEUE ${queue}: ${message}`);
  }
}

export interface PacketQueueOptions {
  queue: number;
  /** Netlink receive buffer, octets: room for bursts while the handler runs. */
  bufferBytes: number;
  handler: (packet: Buffer) => Verdict;
  /** Verdict of a packet whose handler threw. */
  fallback: 'accept' | 'drop';
  onHandlerError: (error: unknown) => void;
}

/** Packets are counted by the handler (the data plane's stats); the queue counts only its handler's errors. */
export class PacketQueue {
  handlerErrors = 0;

  private constructor(readonly options: PacketQueueOptions) {}

  /** Binds the queue (root or CAP_NET_ADMIN; one process per queue number and namespace). */
  static open(options: PacketQueueOptions): PacketQueue {
    const q = new PacketQueue(options);
    const handle = new nfq.NFQueue();
    try {
      handle.open(options.queue, options.bufferBytes);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new PacketQueueError(options.queue, `${why} (needs root, and no other process may have bound this queue)`);
    }
    const accept = nfq.NF_ACCEPT;
    const dropVerdict = nfq.NF_DROP;
    const fallback = options.fallback === 'accept' ? accept : dropVerdict;
    handle.run((p) => {
      let v: Verdict;
      try {
        v = options.handler(p.payload);
      } catch (e) {
        q.handlerErrors++;
        try {
          options.onHandlerError(e);
        } catch {
          // reporting must not stop the verdict
        }
        p.setVerdict(fallback);
        return;
      }
      if (v === 'accept') p.setVerdict(accept);
      else if (v === 'drop') p.setVerdict(dropVerdict);
      else p.setVerdict(accept, null, v);
    });
    return q;
  }
}
