/**
 * Runs tshark (Wireshark's command-line dissector) on packets we built: an independent check
 * of our encoders. tshark will not read a pipe from a Node child process, so the packets go
 * through a temporary pcap file, removed afterwards.
 *
 * When tshark is missing the calls reject with a message that says so and how to install
 * it: tests that use them fail rather than skip.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapOptions, writePcap } from './pcap';

const TSHARK = process.env.TSHARK ?? 'tshark';

export class TsharkMissingError extends Error {
  constructor(cause: string) {
    super(`tshark is not installed or not on PATH (${cause}): install it (apt-get install tshark) or set TSHARK to its path; these tests need it and do not skip`);
    this.name = 'TsharkMissingError';
  }
}

/**
 * Writes `packets` to a temporary pcap (raw IPv6 unless options say otherwise), runs
 * `tshark -r FILE ...args` and resolves to its standard output. Rejects when tshark is
 * missing or exits non-zero (with its standard error in the message).
 */
export async function tshark(packets: readonly Uint8Array[], args: readonly string[], options: PcapOptions = {}): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'shim6-tshark-'));
  const file = join(dir, 'packets.pcap');
  try {
    writePcap(file, packets, options);
    return await new Promise<string>((resolve, reject) => {
      execFile(TSHARK, ['-n', '-r', file, ...args], { maxBuffer: 256 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } }, (error, stdout, stderr) => {
        if (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' || code === 'EACCES') reject(new TsharkMissingError(`${TSHARK}: ${code}`));
          else reject(new Error(`tshark ${args.join(' ')} failed (${error.message.split('\n')[0] ?? ''}): ${stderr.trim()}`));
          return;
        }
        resolve(stdout);
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `tshark -T fields -e F1 -e F2 ...`: one row per packet, one cell per field (multiple
 * occurrences of a field in a packet are joined by ','; an absent field is '').
 */
export async function tsharkFields(packets: readonly Uint8Array[], fields: readonly string[], options: PcapOptions = {}): Promise<string[][]> {
  const out = await tshark(packets, ['-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,', ...fields.flatMap((f) => ['-e', f])], options);
  const lines = out.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line) => line.split('\t'));
}

/** `tshark -V`: the full dissection tree of every packet, as text. */
export function tsharkVerbose(packets: readonly Uint8Array[], options: PcapOptions = {}): Promise<string> {
  return tshark(packets, ['-V'], options);
}
