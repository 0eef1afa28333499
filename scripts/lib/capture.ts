/**
 * Packet captures on the testbed with tshark: start one on a host's interface, run traffic,
 * stop it, then read chosen fields of every packet (Wireshark's own dissectors: an
 * independent view of what went on the wire).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Host, Testbed } from './testbed';
import { waitFor } from './wait';

/** Add to a capture filter so that primed() can see its datagrams: `(${filter}) or ${PRIME_FILTER}`. */
export const PRIME_FILTER = '(udp and dst port 9)';

export class Capture {
  private stderr = '';
  private exited = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly file: string,
  ) {
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    child.once('exit', () => (this.exited = true));
  }

  /**
   * Starts tshark on `iface` of `host` with a capture (BPF) filter; resolves once it captures.
   * `maxPackets` stops it after that many; `snapLength` keeps only the first octets of each.
   */
  static async start(tb: Testbed, host: Host, iface: string, filter: string, options: { maxPackets?: number; snapLength?: number } = {}): Promise<Capture> {
    const dir = mkdtempSync(join(tmpdir(), 'shim6-capture-'));
    const file = join(dir, 'capture.pcapng');
    const limits = [...(options.maxPackets ? ['-c', String(options.maxPackets)] : []), ...(options.snapLength ? ['-s', String(options.snapLength)] : [])];
    const child = tb.spawn(host, 'tshark', ['-n', '-q', '-i', iface, '-f', filter, ...limits, '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    const c = new Capture(child, dir, file);
    await waitFor(
      () => {
        if (c.exited) throw new Error(`tshark exited: ${c.stderr.trim()}`);
        return c.stderr.includes('Capturing on');
      },
      { what: `tshark to capture on ${host}/${iface}`, timeoutMs: 20_000, intervalMs: 20 },
    );
    return c;
  }

  /**
   * Waits until the capture really records: tshark says "Capturing on" a moment before its
   * filter is in place. Sends a UDP datagram to port 9 (discard) from `from` in `host` to
   * `target`, over the captured interface, until one shows up in the file; the capture filter
   * must let it through (see PRIME_FILTER), and readers should skip it (udp.dstport == 9).
   */
  async primed(tb: Testbed, host: Host, from: string, target: string): Promise<void> {
    await waitFor(
      async () => {
        await tb.udpSend(host, from, target, 9, ['capture-prime']);
        const rows = await this.fields(['udp.dstport'], 'udp.dstport == 9').catch(() => []);
        return rows.length > 0;
      },
      { what: 'the capture to record a priming datagram', timeoutMs: 20_000, intervalMs: 200 },
    );
  }

  /** Stops the capture (SIGINT, so the file is complete). */
  async stop(): Promise<void> {
    if (!this.exited) this.child.kill('SIGINT');
    await waitFor(() => this.exited, { what: 'tshark to stop', timeoutMs: 10_000, intervalMs: 20 });
  }

  /** Reads the capture with tshark (`-r`, display filter, then `args`); its standard output. */
  private read(args: readonly string[], displayFilter: string | undefined): Promise<string> {
    const argv = ['-n', '-r', this.file, ...(displayFilter ? ['-Y', displayFilter] : []), ...args];
    return new Promise((resolve, reject) => {
      execFile('tshark', argv, { maxBuffer: 1024 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (error, stdout, stderr) => {
        if (error) reject(new Error(`tshark -r: ${error.message.split('\n')[0] ?? ''} ${stderr.trim()}`));
        else resolve(stdout);
      });
    });
  }

  /** One row per packet (matching the display filter), one cell per field. */
  async fields(fields: readonly string[], displayFilter?: string): Promise<string[][]> {
    const out = await this.read(['-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,', ...fields.flatMap((f) => ['-e', f])], displayFilter);
    return out
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t'));
  }

  /**
   * The raw octets (hex) of one field per packet, from tshark's JSON with -x: for fields that
   * tshark shows but gives no value for, such as the payload header's tag (shim6.ct).
   */
  async rawField(field: string, displayFilter?: string): Promise<string[]> {
    const find = (node: unknown): string | undefined => {
      if (node === null || typeof node !== 'object') return undefined;
      const raw = (node as Record<string, unknown>)[`${field}_raw`];
      if (Array.isArray(raw) && typeof raw[0] === 'string') return raw[0];
      for (const v of Object.values(node as Record<string, unknown>)) {
        const f = find(v);
        if (f !== undefined) return f;
      }
      return undefined;
    };
    const packets = JSON.parse(await this.read(['-T', 'json', '-x'], displayFilter)) as unknown[];
    return packets.map((p) => find(p) ?? '');
  }

  /** Removes the capture file. */
  cleanup(): void {
    if (!this.exited) this.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
