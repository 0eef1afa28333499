/**
 * The MTU of the path a shimmed locator pair takes, as this host knows it: the route's (or
 * its PMTU exception's) `mtu` from `ip -6 route get PEER from LOCAL`, else the MTU of the
 * outgoing interface. Used to decide when an outbound packet plus the 8-octet payload header
 * no longer fits.
 */
import type { Runner } from '../iptables-rules/exec';

export class PathMtuError extends Error {
  override readonly name = 'PathMtuError';
}

const MTU_RE = /\bmtu (?:lock )?(\d+)\b/;
const DEV_RE = /\bdev (\S+)/;

export async function lookupPathMtu(run: Runner, local: string, peer: string, ip = 'ip'): Promise<number> {
  const route = await run([ip, '-6', 'route', 'get', peer, 'from', local], undefined, 5000);
  if (route.code !== 0) throw new PathMtuError(`no route ${local} → ${peer}: ${route.stderr.trim() || `exit ${String(route.code)}`}`);
  const own = MTU_RE.exec(route.stdout);
  if (own) return Number(own[1]);
  const dev = DEV_RE.exec(route.stdout)?.[1];
  if (dev === undefined) throw new PathMtuError(`route ${local} → ${peer} names no device: ${route.stdout.trim()}`);
  const link = await run([ip, '-o', 'link', 'show', 'dev', dev], undefined, 5000);
  const m = link.code === 0 ? MTU_RE.exec(link.stdout) : null;
  if (!m) throw new PathMtuError(`cannot read the MTU of ${dev}: ${link.stderr.trim() || link.stdout.trim()}`);
  return Number(m[1]);
}
