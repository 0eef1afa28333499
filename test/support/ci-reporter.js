// Mocha reporter for CI: the spec reporter's output, plus the real counts written as
// JSON to the file named by SHIM6_TEST_STATS (when set), for .ci/run to summarise.
'use strict';
const fs = require('node:fs');
const Mocha = require('mocha');
const { EVENT_RUN_END } = Mocha.Runner.constants;

class CiReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const file = process.env.SHIM6_TEST_STATS;
      if (!file) return;
      const s = runner.stats || {};
      fs.writeFileSync(file, JSON.stringify({
        passes: s.passes || 0, failures: s.failures || 0, pending: s.pending || 0, tests: s.tests || 0,
      }));
    });
  }
}
module.exports = CiReporter;
