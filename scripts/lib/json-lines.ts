/**
 * The testbed's small helper programs report on stdout, one JSON object per line: this
 * collects them as they come, with the child's stderr and whether it has exited.
 */
import type { ChildProcess } from 'node:child_process';

export type JsonLine = Record<string, unknown>;

export interface JsonLines {
  /** Every line so far, parsed, oldest first (grows as the child writes). */
  lines: JsonLine[];
  stderr: () => string;
  exited: () => boolean;
}

export function jsonLines(child: ChildProcess): JsonLines {
  const lines: JsonLine[] = [];
  let buf = '';
  let err = '';
  let done = false;
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)) as JsonLine);
      buf = buf.slice(nl + 1);
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.once('exit', () => (done = true));
  return { lines, stderr: () => err, exited: () => done };
}
