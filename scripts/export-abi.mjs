// Writes the ABI and bytecode of the deployable contracts from forge's build output (out/) into
// crates/actp-client/abi/, where the Rust bindings (alloy `sol!`) read them. With --check, compares instead and fails
// when the committed files differ from a fresh build. Run through `make abi` / `make check-abi`.
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";

const contracts = ["EscrowKernel", "MockUSDC"];
const check = process.argv.includes("--check");
let stale = [];
mkdirSync("crates/actp-client/abi", { recursive: true });
for (const name of contracts) {
  const artifact = JSON.parse(readFileSync(`out/${name}.sol/${name}.json`, "utf8"));
  const trimmed = {
    abi: artifact.abi,
    bytecode: artifact.bytecode.object,
    deployedBytecode: artifact.deployedBytecode.object,
  };
  const text = JSON.stringify(trimmed, null, 2) + "\n";
  const path = `crates/actp-client/abi/${name}.json`;
  if (check) {
    if (!existsSync(path) || readFileSync(path, "utf8") !== text) stale.push(path);
  } else {
    writeFileSync(path, text);
  }
}
if (stale.length) {
  console.error(`committed ABI out of date: ${stale.join(", ")}\nrun \`make abi\` and commit the result`);
  process.exit(1);
}
