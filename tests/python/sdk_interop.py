"""The real ACTP Python SDK (agirails on PyPI) on the other side of this project's delivery proofs.

    sdk_interop.py verify   < {"domain": {...}, "proof": <AIP-4 wire proof>, "provider": "0x..."}
        prints {"valid": bool}: MessageSigner.verify_signature on the proof, expecting the provider.
    sdk_interop.py sign     < {"key", "chainId", "kernel", "txId", "consumer", "result", "deliveredAt", "nonce"}
        prints the AIP-4 wire proof the SDK signs (DeliveryProofBuilder + sign_delivery_proof_message).

Run by tests/tests/sdk_interop.rs inside a virtualenv it creates; never needs the network otherwise.
"""
import json
import sys

from agirails.builders import DeliveryProofBuilder
from agirails.protocol.messages import MessageSigner
from agirails.types.message import EIP712Domain, SignedMessage

SIGNED_FIELDS = [
    "txId", "provider", "consumer", "resultCID", "resultHash",
    "easAttestationUID", "deliveredAt", "chainId", "nonce",
]
# Any key: verify_signature checks the domain and signer carried by the message, not its own.
VERIFIER_KEY = "0x" + "11" * 32


def verify(request):
    domain = request["domain"]
    proof = request["proof"]
    signed = SignedMessage(
        domain=EIP712Domain(
            name=domain["name"],
            version=domain["version"],
            chain_id=domain["chainId"],
            verifying_contract=domain["verifyingContract"],
        ),
        message={field: proof[field] for field in SIGNED_FIELDS},
        message_type="DeliveryProof",
        signature=proof["signature"],
        signer=request["provider"],
    )
    verifier = MessageSigner(VERIFIER_KEY, chain_id=domain["chainId"])
    return {"valid": verifier.verify_signature(signed, expected_signer=request["provider"])}


def sign(request):
    signer = MessageSigner(
        request["key"],
        chain_id=request["chainId"],
        verifying_contract=request["kernel"],
        domain_version="1",  # the AIP-4 domain, as the TypeScript SDK signs it
    )
    proof = (
        DeliveryProofBuilder()
        .for_transaction(request["txId"])
        .from_provider(signer.address)
        .for_consumer(request["consumer"])
        .with_output(request["result"])
        .at_timestamp(request["deliveredAt"])
        .with_nonce(request["nonce"])
        .on_chain(request["chainId"])
        .build()
    )
    signer.sign_delivery_proof_message(proof)
    return proof.to_dict()


if __name__ == "__main__":
    command = sys.argv[1]
    request = json.load(sys.stdin)
    answer = {"verify": verify, "sign": sign}[command](request)
    json.dump(answer, sys.stdout)
