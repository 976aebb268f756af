#![allow(clippy::unwrap_used)]
use super::*;
use crate::eip712::actp_domain;
use alloy_primitives::keccak256;
use alloy_signer_local::PrivateKeySigner;

const SESSION: B256 = B256::repeat_byte(1);

fn u(x: u64) -> U256 {
    U256::from(x)
}

struct Fixture {
    provider: PrivateKeySigner,
    domain: Eip712Domain,
    chain: ReceiptChain,
    last: Option<SessionReceipt>,
}

impl Fixture {
    fn new() -> Self {
        let provider = PrivateKeySigner::random();
        let domain = actp_domain(31337, Address::repeat_byte(0xee));
        let chain = ReceiptChain::new(SESSION, provider.address(), domain.clone());
        Fixture {
            provider,
            domain,
            chain,
            last: None,
        }
    }

    fn receipt(&self, charge: u64, call: u8) -> SessionReceipt {
        let (req, res) = (B256::repeat_byte(call), keccak256([call]));
        match &self.last {
            None => SessionReceipt::first(SESSION, u(charge), u(100_000 - charge), req, res),
            Some(prev) => SessionReceipt::after(
                prev,
                &self.domain,
                u(charge),
                u(100_000) - prev.charged - u(charge),
                req,
                res,
            )
            .unwrap(),
        }
    }

    fn sign(&self, r: SessionReceipt) -> SignedReceipt {
        SignedReceipt::sign(r, &self.domain, &self.provider).unwrap()
    }

    fn accept(
        &mut self,
        signed: &SignedReceipt,
        cumulative: u64,
        call: u8,
    ) -> Result<(), ReceiptError> {
        self.chain.accept(
            signed,
            u(cumulative),
            B256::repeat_byte(call),
            keccak256([call]),
        )?;
        self.last = Some(signed.receipt.clone());
        Ok(())
    }
}

#[test]
fn a_chain_of_honest_receipts_adds_up_and_its_head_is_the_last_hash() {
    let mut f = Fixture::new();
    for (call, charge) in [(1u8, 1_200u64), (2, 0), (3, 5_000), (4, 1)] {
        // the voucher: charged so far plus this call's maximum (5,000)
        let cumulative = f.chain.charged().to::<u64>() + 5_000;
        let signed = f.sign(f.receipt(charge, call));
        f.accept(&signed, cumulative, call).unwrap();
        assert_eq!(f.chain.head(), signed.hash(&f.domain));
    }
    assert_eq!(f.chain.charged(), u(6_201));
    assert_eq!(f.chain.len(), 4);
    // The head commits to every receipt: rewriting the first changes every hash after it.
    let mut g = Fixture::new();
    for (call, charge) in [(1u8, 1_199u64), (2, 0), (3, 5_000), (4, 1)] {
        let signed = g.sign(g.receipt(charge, call));
        g.accept(&signed, 100_000, call).unwrap();
    }
    assert_ne!(g.chain.head(), f.chain.head());
}

#[test]
fn every_kind_of_dishonest_receipt_is_refused_and_nothing_is_appended() {
    let mut f = Fixture::new();
    let first = f.sign(f.receipt(1_000, 1));
    f.accept(&first, 5_000, 1).unwrap();
    let head = f.chain.head();

    let over = f.sign(f.receipt(5_001, 2));
    assert_eq!(
        f.chain
            .accept(&over, u(6_000), B256::repeat_byte(2), keccak256([2u8])),
        Err(ReceiptError::Overcharged {
            seq: 1,
            charge: u(5_001),
            authorized: u(5_000)
        })
    );
    let mut wrong_total = f.receipt(10, 2);
    wrong_total.charged = u(2_000);
    assert!(matches!(
        f.chain.accept(
            &f.sign(wrong_total),
            u(6_000),
            B256::repeat_byte(2),
            keccak256([2u8])
        ),
        Err(ReceiptError::WrongTotal { .. })
    ));
    let skipped = {
        let mut r = f.receipt(10, 2);
        r.seq = 2;
        f.sign(r)
    };
    assert!(matches!(
        f.chain
            .accept(&skipped, u(6_000), B256::repeat_byte(2), keccak256([2u8])),
        Err(ReceiptError::Broken { .. })
    ));
    let unchained = {
        let mut r = f.receipt(10, 2);
        r.previous = B256::repeat_byte(9);
        f.sign(r)
    };
    assert!(matches!(
        f.chain
            .accept(&unchained, u(6_000), B256::repeat_byte(2), keccak256([2u8])),
        Err(ReceiptError::Broken { .. })
    ));
    let forged =
        SignedReceipt::sign(f.receipt(10, 2), &f.domain, &PrivateKeySigner::random()).unwrap();
    assert!(matches!(
        f.chain
            .accept(&forged, u(6_000), B256::repeat_byte(2), keccak256([2u8])),
        Err(ReceiptError::WrongSigner { .. })
    ));
    let other_session = {
        let mut r = f.receipt(10, 2);
        r.txId = B256::repeat_byte(7);
        f.sign(r)
    };
    assert!(matches!(
        f.chain.accept(
            &other_session,
            u(6_000),
            B256::repeat_byte(2),
            keccak256([2u8])
        ),
        Err(ReceiptError::WrongSession { .. })
    ));
    let honest = f.sign(f.receipt(10, 2));
    assert_eq!(
        f.chain
            .accept(&honest, u(6_000), B256::repeat_byte(3), keccak256([2u8])),
        Err(ReceiptError::WrongCall {
            seq: 1,
            what: "request"
        })
    );
    assert_eq!(
        f.chain
            .accept(&honest, u(6_000), B256::repeat_byte(2), keccak256([3u8])),
        Err(ReceiptError::WrongCall {
            seq: 1,
            what: "response"
        })
    );
    assert_eq!(
        (f.chain.len(), f.chain.head(), f.chain.charged()),
        (1, head, u(1_000))
    );
    f.accept(&honest, 6_000, 2).unwrap();
    assert_eq!(f.chain.charged(), u(1_010));
}

#[test]
fn header_round_trip_and_malformed() {
    let f = Fixture::new();
    let signed = f.sign(f.receipt(1_234, 1));
    let header = signed.to_header();
    assert!(header.contains("\"charge\":\"1234\""), "{header}");
    assert_eq!(SignedReceipt::from_header(&header).unwrap(), signed);
    for bad in [
        "",
        "{}",
        &header.replace("\"1234\"", "\"-1\""),
        &header.replace("\"1234\"", "\"0x10\""),
        &header.replace("\"1234\"", "1234"),
        &header.replace("\"seq\":0", "\"seq\":-1"),
        &header.replace("\"charge\"", "\"extra\":1,\"charge\""),
        &header.replace(
            &format!(
                "0x{}",
                alloy_primitives::hex::encode(signed.signature.as_bytes())
            ),
            "0x00",
        ),
    ] {
        assert!(
            matches!(
                SignedReceipt::from_header(bad),
                Err(ReceiptError::Malformed(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn a_resumed_chain_continues_where_it_stopped() {
    let mut f = Fixture::new();
    let first = f.sign(f.receipt(700, 1));
    f.accept(&first, 5_000, 1).unwrap();
    let mut resumed = ReceiptChain::resume(
        SESSION,
        f.provider.address(),
        f.domain.clone(),
        f.chain.len(),
        f.chain.head(),
        f.chain.charged(),
    );
    let second = f.sign(f.receipt(300, 2));
    resumed
        .accept(&second, u(5_700), B256::repeat_byte(2), keccak256([2u8]))
        .unwrap();
    assert_eq!(resumed.charged(), u(1_000));
}

/// Signs `receipts` as one batch: the signature over the root, each receipt with its path.
fn sign_batch(f: &Fixture, receipts: Vec<SessionReceipt>) -> Vec<SignedReceipt> {
    let leaves: Vec<B256> = receipts.iter().map(|r| r.hash(&f.domain)).collect();
    let (signed, paths) = crate::batch::tree(&leaves, &f.domain).unwrap();
    let signature = f.provider.sign_hash_sync(&signed).unwrap();
    receipts
        .into_iter()
        .zip(paths)
        .map(|(receipt, path)| SignedReceipt {
            receipt,
            signature,
            path,
        })
        .collect()
}

#[test]
fn receipts_signed_in_one_batch_are_each_accepted_and_keep_their_path_on_the_wire() {
    let mut f = Fixture::new();
    // Receipts of this session and of two other calls' answers (stand-ins for other sessions' receipts)
    // signed at once.
    let mine = f.receipt(400, 1);
    let others = [
        SessionReceipt::first(B256::repeat_byte(7), u(1), u(2), B256::ZERO, B256::ZERO),
        SessionReceipt::first(B256::repeat_byte(8), u(3), u(4), B256::ZERO, B256::ZERO),
    ];
    let batch = sign_batch(&f, vec![others[0].clone(), mine, others[1].clone()]);
    let signed = &batch[1];
    assert!(!signed.path.is_empty());
    let header = signed.to_header();
    assert!(header.contains("\"batch\":[\"0x"), "{header}");
    let parsed = SignedReceipt::from_header(&header).unwrap();
    assert_eq!(&parsed, signed);
    assert_eq!(parsed.signer(&f.domain).unwrap(), f.provider.address());
    f.accept(&parsed, 1_000, 1).unwrap();
    assert_eq!(f.chain.charged(), u(400));
    // Another batch's path, or none, does not make the signature the provider's for this receipt.
    let next = f.receipt(100, 2);
    let mut forged = sign_batch(&f, vec![next, others[0].clone()]).remove(0);
    forged.path = batch[0].path.clone();
    assert!(matches!(
        f.accept(&forged, 2_000, 2),
        Err(ReceiptError::WrongSigner { .. } | ReceiptError::BadSignature(_))
    ));
    forged.path.clear();
    assert!(f.accept(&forged, 2_000, 2).is_err());
    assert_eq!(f.chain.charged(), u(400));
    // A path longer than any batch is refused as malformed.
    let long = header.replace(
        "\"batch\":[",
        &format!(
            "\"batch\":[{}",
            "\"0x0000000000000000000000000000000000000000000000000000000000000000\",".repeat(32)
        ),
    );
    assert!(matches!(
        SignedReceipt::from_header(&long),
        Err(ReceiptError::Malformed(_))
    ));
}
