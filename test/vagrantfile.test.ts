/**
 * The deployment files, checked without a VM: the Vagrantfile parses (ruby -c), the shell
 * scripts parse (bash -n; shellcheck too when it is installed), and the systemd units pass
 * `systemd-analyze verify` (when systemd-analyze is installed) with their /opt/shim6 paths
 * pointed at this checkout.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
const SCRIPTS = ['scripts/vagrant-provision', 'scripts/shim6', 'scripts/testbed', 'scripts/install-deps'];
const UNITS = ['reapd.service', 'shim6d.service'];

function have(program: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' }).status === 0;
}

function exec(cmd: string, args: string[], cwd = ROOT): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('deployment files (Vagrantfile, provisioning, init script, systemd units)', function () {
  this.timeout(60_000);

  it('the Vagrantfile is valid Ruby (ruby -c)', () => {
    assert.ok(have('ruby'), 'ruby is not installed: run scripts/install-deps');
    const r = exec('ruby', ['-c', 'Vagrantfile']);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /Syntax OK/);
  });

  it('the Vagrantfile defines two Debian 12 VMs on two private networks, provisioned by scripts/vagrant-provision', () => {
    const text = readFileSync(join(ROOT, 'Vagrantfile'), 'utf8');
    assert.match(text, /config\.vm\.box = "debian\/bookworm64"/);
    assert.match(text, /"private_network"/);
    assert.equal((text.match(/^\s+\d => "[0-9a-f:]+::",$/gm) ?? []).length, 2, 'two path prefixes');
    assert.match(text, /path: "scripts\/vagrant-provision"/);
  });

  for (const script of SCRIPTS) {
    it(`${script} parses (bash -n)`, () => {
      const r = exec('bash', ['-n', script]);
      assert.equal(r.status, 0, r.out);
    });
  }

  it('the scripts pass shellcheck (when installed)', function () {
    if (!have('shellcheck')) this.skip();
    const r = exec('shellcheck', SCRIPTS);
    assert.equal(r.status, 0, r.out);
  });

  it('scripts/vagrant-provision --help documents it; a bad call exits 2', () => {
    const help = exec(join(ROOT, 'scripts', 'vagrant-provision'), ['--help']);
    assert.equal(help.status, 0, help.out);
    assert.match(help.out, /Usage: scripts\/vagrant-provision --host NAME/);
    assert.equal(exec(join(ROOT, 'scripts', 'vagrant-provision'), ['--host', 'a']).status, 2);
  });

  it('the systemd units pass systemd-analyze verify (when installed)', function () {
    if (!have('systemd-analyze')) this.skip();
    const dir = mkdtempSync(join(tmpdir(), 'shim6-units-'));
    try {
      for (const unit of UNITS) {
        const text = readFileSync(join(ROOT, 'scripts', 'systemd', unit), 'utf8');
        writeFileSync(join(dir, unit), text.replaceAll('/opt/shim6', ROOT));
      }
      const r = exec('systemd-analyze', ['verify', ...UNITS.map((u) => join(dir, u))], dir);
      assert.equal(r.status, 0, r.out);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the units: Type=simple, --config /etc/shim6/shim6.json, reload by SIGHUP, restart on failure, CAP_NET_ADMIN and CAP_NET_RAW kept', () => {
    for (const unit of UNITS) {
      const text = readFileSync(join(ROOT, 'scripts', 'systemd', unit), 'utf8');
      const daemon = unit.replace('.service', '');
      assert.match(text, /^Type=simple$/m);
      assert.match(text, new RegExp(`^ExecStart=/opt/shim6/bin/${daemon} --config /etc/shim6/shim6.json$`, 'm'));
      assert.match(text, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
      assert.match(text, /^Restart=on-failure$/m);
      assert.match(text, /^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW$/m);
      assert.doesNotMatch(text, /^MemoryDenyWriteExecute=yes/m, 'Node.js needs W^X memory for its JIT');
      assert.doesNotMatch(text, /^ProtectKernelTunables=yes/m, 'shim6d writes net sysctls');
    }
    const shim6d = readFileSync(join(ROOT, 'scripts', 'systemd', 'shim6d.service'), 'utf8');
    assert.match(shim6d, /^Requires=reapd\.service$/m);
    assert.match(shim6d, /^After=reapd\.service/m);
  });
});
