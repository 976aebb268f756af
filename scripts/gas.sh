#!/usr/bin/env bash
# Gas benchmark: each step of the happy path as a real transaction on a local anvil chain (intrinsic gas
# and calldata included), second iteration (warm accounts). Prints a table and writes target/gas.json.
# Run with `make gas`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="$root/node_modules/@foundry-rs"
anvil="$bin/anvil-linux-amd64/bin/anvil"
cast="$bin/cast-linux-amd64/bin/cast"
forge="$root/node_modules/.bin/forge"
out_json="${GAS_JSON:-$root/target/gas.json}"
mkdir -p "$root/target/deployments"

port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
rpc="http://127.0.0.1:$port"
"$anvil" --port "$port" --silent --chain-id 31337 &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do "$cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done

# anvil's public development keys (never use them anywhere else)
keys=(
  0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
  0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
  0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a
  0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6
  0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a
)
admin_key=${keys[0]}; requester_key=${keys[1]}; provider_key=${keys[2]}; bot_key=${keys[3]}
provider2_key=${keys[4]}
requester=$("$cast" wallet address "$requester_key")
provider=$("$cast" wallet address "$provider_key")
provider2=$("$cast" wallet address "$provider2_key")

deployment="$root/target/deployments/gas.json"
rm -f "$deployment"
ACTP_DEPLOYER_KEY=$admin_key ACTP_DEPLOYMENT_OUT=$deployment \
  "$forge" script contracts/script/Deploy.s.sol --rpc-url "$rpc" --broadcast --silent >/dev/null
kernel=$(node -p "require('$deployment').kernel")
token=$(node -p "require('$deployment').token")

send() { # key, to, sig, args... -> receipt JSON on stdout
  local key=$1 to=$2; shift 2
  "$cast" send --rpc-url "$rpc" --private-key "$key" --json "$to" "$@"
}
gas_of() { node -e 'const r=JSON.parse(require("fs").readFileSync(0));if(r.status!=="0x1")process.exit(1);console.log(BigInt(r.gasUsed).toString())'; }
tx_id_of() { node -e 'const r=JSON.parse(require("fs").readFileSync(0));console.log(r.logs[0].topics[1])'; }

amount=1000000 # 1.00 token
window=3600
service=$("$cast" keccak "gas-bench/v1")
send "$admin_key" "$token" "mint(address,uint256)" "$requester" 1000000000000 >/dev/null
# Warm the provider's and fee recipient's token balances the way a running system has them.
send "$admin_key" "$token" "mint(address,uint256)" "$provider" 1 >/dev/null
send "$admin_key" "$token" "mint(address,uint256)" "$provider2" 1 >/dev/null

now() { "$cast" block latest --rpc-url "$rpc" --field timestamp; }
# As an ACTP v3 client does: approve exactly the amount before funding (not counted in the path; the
# allowance returning to zero earns the funding transaction a storage refund).
approve_exact() { send "$requester_key" "$token" "approve(address,uint256)" "$kernel" $amount >/dev/null; }

declare -A g
compat_path() { # one iteration of createTransaction, linkEscrow, IN_PROGRESS, DELIVERED, SETTLED
  local deadline=$(( $(now) + 86400 )) r id
  approve_exact
  r=$(send "$requester_key" "$kernel" \
    "createTransaction(address,address,uint256,uint256,uint256,bytes32,uint256,uint256)" \
    "$provider" "$requester" $amount $deadline $window "$service" 0 0)
  g[compat_create]=$(gas_of <<<"$r"); id=$(tx_id_of <<<"$r")
  g[compat_link]=$(send "$requester_key" "$kernel" "linkEscrow(bytes32,address,bytes32)" "$id" "$kernel" "$id" | gas_of)
  g[compat_start]=$(send "$provider_key" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 3 0x | gas_of)
  g[compat_deliver]=$(send "$provider_key" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 4 \
    "$("$cast" abi-encode "f(uint256)" $window)" | gas_of)
  g[compat_settle]=$(send "$requester_key" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 5 0x | gas_of)
}
fund_path() { # createAndFund, IN_PROGRESS, DELIVERED (64-byte proof), SETTLED
  local deadline=$(( $(now) + 86400 )) r id
  approve_exact
  r=$(send "$requester_key" "$kernel" \
    "createAndFund(address,uint256,uint256,uint256,bytes32,uint256,uint256)" \
    "$provider" $amount $deadline $window "$service" 0 0)
  g[fund_create]=$(gas_of <<<"$r"); id=$(tx_id_of <<<"$r")
  g[fund_start]=$(send "$provider_key" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 3 0x | gas_of)
  g[fund_deliver]=$(send "$provider_key" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 4 \
    "$("$cast" abi-encode "f(uint256,bytes32)" $window "$("$cast" keccak delivered-bytes)")" | gas_of)
  g[fund_settle]=$(send "$requester_key" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 5 0x | gas_of)
}
# Sessions: one deposit for 1,000 calls at 0.001 each; the provider claims 900 of them (a metered session leaves
# some of its deposit unspent, which settlement refunds).
session_deposit=1000000; session_topup=500000; session_claim=900000; session_cumulative=905000
request_hash=$("$cast" keccak "POST /v1/chat/completions")
voucher() { # txId, cumulative -> the requester's EIP-712 SessionVoucher signature (expiry 0: never checked here)
  local typehash domain_typehash struct domain
  typehash=$("$cast" keccak "SessionVoucher(bytes32 txId,uint256 cumulative,bytes32 requestHash,uint256 expiresAt)")
  domain_typehash=$("$cast" keccak "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
  struct=$("$cast" keccak "$("$cast" abi-encode "f(bytes32,bytes32,uint256,bytes32,uint256)" \
    "$typehash" "$1" "$2" "$request_hash" 0)")
  domain=$("$cast" keccak "$("$cast" abi-encode "f(bytes32,bytes32,bytes32,uint256,address)" \
    "$domain_typehash" "$("$cast" keccak AGIRAILS)" "$("$cast" keccak 1)" 31337 "$kernel")")
  "$cast" wallet sign --no-hash --private-key "$requester_key" "$("$cast" keccak "0x1901${domain#0x}${struct#0x}")"
}
session_path() { # openSession, IN_PROGRESS, closeSession (signature checked on chain), SETTLED with the refund
  local deadline=$(( $(now) + 86400 )) r id
  send "$requester_key" "$token" "approve(address,uint256)" "$kernel" $session_deposit >/dev/null
  r=$(send "$requester_key" "$kernel" "openSession(address,uint256,uint256,uint256,bytes32,uint256)" \
    "$provider" $session_deposit $deadline $window "$service" 3600)
  g[session_open]=$(gas_of <<<"$r"); id=$(tx_id_of <<<"$r")
  send "$requester_key" "$token" "approve(address,uint256)" "$kernel" $session_topup >/dev/null
  g[session_topup]=$(send "$requester_key" "$kernel" "topUpSession(bytes32,uint256)" "$id" $session_topup | gas_of)
  g[session_start]=$(send "$provider_key" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 3 0x | gas_of)
  g[session_close]=$(send "$provider_key" "$kernel" \
    "closeSession(bytes32,uint256,uint256,bytes32,uint256,bytes,bytes32)" "$id" $session_claim \
    $session_cumulative "$request_hash" 0 "$(voucher "$id" $session_cumulative)" "$("$cast" keccak receipts)" | gas_of)
  g[session_settle]=$(send "$requester_key" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 5 0x | gas_of)
}
delivered() { # provider key -> creates, funds, starts and delivers one transaction; prints its id
  local pkey=$1 deadline=$(( $(now) + 86400 )) id
  approve_exact
  id=$(send "$requester_key" "$kernel" "createAndFund(address,uint256,uint256,uint256,bytes32,uint256,uint256)" \
    "$("$cast" wallet address "$pkey")" $amount $deadline $window "$service" 0 0 | tx_id_of)
  send "$pkey" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 3 0x >/dev/null
  send "$pkey" "$kernel" "transitionState(bytes32,uint8,bytes)" "$id" 4 0x >/dev/null
  echo "$id"
}
batch_gas() { # n, alternate -> gas of settleBatch over n due transactions, sent by a third party after the
  # window; with alternate=1 consecutive transactions have different providers (one transfer each)
  local n=$1 alternate=$2 ids=() i pkey
  for ((i = 0; i < n; i++)); do
    pkey=$provider_key; if [ "$alternate" = 1 ] && ((i % 2)); then pkey=$provider2_key; fi
    ids+=("$(delivered "$pkey")")
  done
  "$cast" rpc --rpc-url "$rpc" evm_increaseTime $((window + 1)) >/dev/null
  "$cast" rpc --rpc-url "$rpc" evm_mine >/dev/null
  send "$bot_key" "$kernel" "settleBatch(bytes32[])" "[$(IFS=,; echo "${ids[*]}")]" | gas_of
}

compat_path; compat_path   # the second iteration is the one reported
fund_path; fund_path
session_path; session_path
batch_gas 1 0 >/dev/null   # warm-up
batch1=$(batch_gas 1 0)
batch10=$(batch_gas 10 0)
batch10mixed=$(batch_gas 10 1)

node - "$out_json" <<EOF_NODE
const [out] = process.argv.slice(2);
const g = {
  compat: { createTransaction: ${g[compat_create]}, linkEscrow: ${g[compat_link]}, start: ${g[compat_start]},
            deliver: ${g[compat_deliver]}, settle: ${g[compat_settle]} },
  createAndFund: { createAndFund: ${g[fund_create]}, start: ${g[fund_start]}, deliver: ${g[fund_deliver]},
                   settle: ${g[fund_settle]} },
  session: { openSession: ${g[session_open]}, start: ${g[session_start]}, closeSession: ${g[session_close]},
             settle: ${g[session_settle]} },
  topUp: ${g[session_topup]},
  batch: { settle1: ${batch1}, settle10: ${batch10}, settle10mixed: ${batch10mixed} },
};
const sum = o => Object.values(o).reduce((a, b) => a + b, 0);
// Gas savings on the compatible path (issue 12, section 7), each measured with this script when it was made,
// in this order, on top of the review fixes (which cost +92: 276,899 -> 276,991). No check was dropped.
const savings = [
  ["StateTransitioned logged from scratch memory in assembly (link, start, deliver, settle)", 154],
  ["TransactionCreated, EscrowLinked, PlatformFeeAccrued, EscrowReleased logged in assembly", 44],
  ["kernel balance read before/after funding as a plain staticcall (fee-on-transfer check kept)", 326],
  ["unchecked arithmetic where bounds are proven (fee, payout, accrual, remaining, window end, deadline)", 584],
  ["transaction id hashed in unallocated memory (create)", 142],
];
const beforeSavings = 276991;
const result = {
  note: "gas used by real transactions on anvil (intrinsic and calldata included), second iteration, warm accounts, exact approval before funding (not counted)",
  compatible_path: { steps: g.compat, total: sum(g.compat), floor: 262000, reference_kernel: 721381,
                     before_savings: beforeSavings,
                     savings: savings.map(([change, gas]) => ({ change, gas })) },
  create_and_fund_path: { steps: g.createAndFund, total: sum(g.createAndFund) },
  session: { steps: g.session, total: sum(g.session), topUpSession: g.topUp, calls: 1000,
             per_call: Math.round(sum(g.session) / 1000), per_call_target: 300,
             per_call_path_per_call: sum(g.createAndFund) },
  batch_settlement: { one: g.batch.settle1, ten_same_provider: g.batch.settle10,
                      ten_alternating_providers: g.batch.settle10mixed,
                      per_additional_same_provider: Math.round((g.batch.settle10 - g.batch.settle1) / 9),
                      per_additional_alternating_providers: Math.round((g.batch.settle10mixed - g.batch.settle1) / 9),
                    },
};
require("fs").mkdirSync(require("path").dirname(out), { recursive: true });
require("fs").writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
const row = (a, b) => console.log("| " + a.padEnd(52) + " | " + String(b).padStart(9) + " |");
console.log("| step" + " ".repeat(48) + " |       gas |");
console.log("|" + "-".repeat(54) + "|" + "-".repeat(11) + "|");
for (const [k, v] of Object.entries(g.compat)) row("compatible: " + k, v);
row("compatible path, total (floor ~262,000)", result.compatible_path.total);
for (const [k, v] of Object.entries(g.createAndFund)) row("create-and-fund: " + k, v);
row("create-and-fund path, total", result.create_and_fund_path.total);
for (const [k, v] of Object.entries(g.session)) row("session: " + k, v);
row("session, total (open + start + close + settle)", result.session.total);
row("session: topUpSession (not in the total)", g.topUp);
row("session, per call over 1,000 calls (target 300)", result.session.per_call);
row("per-call path (create-and-fund), per call", result.create_and_fund_path.total);
row("settleBatch, 1 transaction", g.batch.settle1);
row("settleBatch, 10 transactions, one provider", g.batch.settle10);
row("settleBatch, 10 transactions, alternating providers", g.batch.settle10mixed);
row("settleBatch, per additional tx, one provider", result.batch_settlement.per_additional_same_provider);
row("settleBatch, per additional tx, alternating", result.batch_settlement.per_additional_alternating_providers);
console.log("\nsavings on the compatible path (each measured when made; no check dropped):");
const srow = (a, b) => console.log("| " + a.padEnd(108) + " | " + String(b).padStart(7) + " |");
srow("change", "gas");
console.log("|" + "-".repeat(110) + "|" + "-".repeat(9) + "|");
srow("compatible path before the savings (with the review fixes)", beforeSavings);
for (const [change, gas] of savings) srow(change, -gas);
srow("expected after the savings", beforeSavings - savings.reduce((a, [, gas]) => a + gas, 0));
srow("compatible path now (measured above)", result.compatible_path.total);
console.log("\nabove the ~262,000 floor, and why it stays (opcode traces; each is a check the kernel keeps):");
for (const [what, gas] of [
  ["function dispatch and ABI decoding of five calls (via-IR dispatches in selector order; v3 names fixed)", 6878],
  ["pause check when funding (a cold read of the config slot): pause stops new funding", 2100],
  ["kernel balance read before and after funding: refuses fee-on-transfer tokens", 1100],
  ["re-entrancy guards on funding and settlement (transient storage)", 680],
]) srow(what, gas);
console.log("\nreference kernel, compatible path: 721,381; written to " + out);
EOF_NODE
