//! The pure parts of a fleet (docs/fleet.md): comparing this replica's key fingerprints
//! with the fleet's, the messages replicas send each other over Redis pub/sub, and the
//! mapping between Redis stream ids and SSE event ids.

/// A key whose fingerprint differs from the one the fleet recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMismatch {
    /// The key's name (`sessions.secret`, …).
    pub name: String,
    /// This replica's fingerprint.
    pub ours: String,
    /// The fleet's.
    pub fleet: String,
    /// The replica that recorded the fleet's.
    pub set_by: String,
}

/// The keys of `ours` (name, fingerprint) whose fingerprint differs from the stored one in
/// `fleet` (name, fingerprint, set by); names the fleet has no row for are not mismatches.
pub fn key_mismatches(
    ours: &[(String, String)],
    fleet: &[(String, String, String)],
) -> Vec<KeyMismatch> {
    ours.iter()
        .filter_map(|(name, fp)| {
            let (_, theirs, by) = fleet.iter().find(|(n, _, _)| n == name)?;
            (theirs != fp).then(|| KeyMismatch {
                name: name.clone(),
                ours: fp.clone(),
                fleet: theirs.clone(),
                set_by: by.clone(),
            })
        })
        .collect()
}

/// One message on the fleet's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// Session `nonce` was ended; refuse it until `expires_at` (Unix seconds).
    Revoked {
        /// The session nonce.
        nonce: [u8; 16],
        /// When its id would have expired anyway.
        expires_at: u64,
    },
    /// Sessions served recently by the sender.
    Seen(Vec<[u8; 16]>),
    /// The sender's catalog changed: rediscover now.
    Catalog,
    /// A notification logged as event `id` of session `nonce`.
    Event {
        /// The session nonce.
        nonce: [u8; 16],
        /// Its SSE event id.
        id: u64,
        /// The JSON-RPC notification.
        message: Vec<u8>,
    },
}

/// `<kind> <sender> …` on the wire: the sender's replica id and the message.
pub fn encode(sender: &str, message: &BusMessage) -> Vec<u8> {
    match message {
        BusMessage::Revoked { nonce, expires_at } => {
            format!("r {sender} {} {expires_at}", hex(nonce)).into_bytes()
        }
        BusMessage::Seen(nonces) => {
            let mut out = format!("s {sender}");
            for n in nonces {
                out.push(' ');
                out.push_str(&hex(n));
            }
            out.into_bytes()
        }
        BusMessage::Catalog => format!("c {sender}").into_bytes(),
        BusMessage::Event { nonce, id, message } => {
            let mut out = format!("e {sender} {} {id} ", hex(nonce)).into_bytes();
            out.extend_from_slice(message);
            out
        }
    }
}

/// The sender and the message of `bytes`; `None` for anything malformed.
pub fn decode(bytes: &[u8]) -> Option<(String, BusMessage)> {
    let mut parts = bytes.splitn(5, |b| *b == b' ');
    let kind = parts.next()?;
    let sender = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let message = match kind {
        b"r" => BusMessage::Revoked {
            nonce: unhex(word(parts.next())?)?,
            expires_at: word(parts.next())?.parse().ok()?,
        },
        b"s" => {
            let rest = bytes.get(3 + sender.len()..).unwrap_or_default();
            let rest = std::str::from_utf8(rest).ok()?;
            BusMessage::Seen(
                rest.split(' ')
                    .filter(|w| !w.is_empty())
                    .map(unhex)
                    .collect::<Option<_>>()?,
            )
        }
        b"c" => BusMessage::Catalog,
        b"e" => BusMessage::Event {
            nonce: unhex(word(parts.next())?)?,
            id: {
                let w = word(parts.next())?;
                w.parse().ok().or_else(|| event_id(w))?
            },
            message: parts.next()?.to_vec(),
        },
        _ => return None,
    };
    Some((sender, message))
}

fn word(part: Option<&[u8]>) -> Option<&str> {
    part.and_then(|w| std::str::from_utf8(w).ok())
}

/// Lowercase hex of a session nonce.
pub fn hex(nonce: &[u8; 16]) -> String {
    nonce.iter().map(|b| format!("{b:02x}")).collect()
}

/// The nonce of 32 hex characters.
pub fn unhex(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Entries a stream id's sequence may number within one millisecond and still map to a
/// distinct event id.
const SEQ_SPAN: u64 = 1_000;

/// The SSE event id of the Redis stream id `ms-seq`: `ms * 1000 + seq` (ids grow as the
/// stream's do; a sequence past 999 in one millisecond is clamped, never seen for the few
/// notifications of one session).
pub fn event_id(stream_id: &str) -> Option<u64> {
    let (ms, seq) = stream_id.split_once('-')?;
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    ms.checked_mul(SEQ_SPAN)?.checked_add(seq.min(SEQ_SPAN - 1))
}

/// The exclusive XRANGE start after SSE event id `id` (`(ms-seq`).
pub fn range_after(id: u64) -> String {
    format!("({}-{}", id / SEQ_SPAN, id % SEQ_SPAN)
}

/// A digest of a merged catalog's content (every entry's kind, exposed name and definition
/// fingerprint): replicas that reached the same catalog compute the same value, so a change
/// every replica sees is announced to a session once (FNV-1a: stable across processes).
pub fn catalog_digest(merged: &crate::catalog::MergedCatalog) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for e in merged.iter() {
        eat(format!("{:?}", e.kind).as_bytes());
        eat(&[0]);
        eat(e.exposed.as_bytes());
        eat(&[0]);
        eat(&e.fingerprint.to_le_bytes());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_only_keys_the_fleet_has_with_another_value() {
        let ours = vec![
            ("sessions.secret".to_string(), "aa".to_string()),
            ("audit.secret".to_string(), "bb".to_string()),
            ("vault.keys.new".to_string(), "cc".to_string()),
        ];
        let fleet = vec![
            (
                "sessions.secret".to_string(),
                "aa".to_string(),
                "r1".to_string(),
            ),
            (
                "audit.secret".to_string(),
                "zz".to_string(),
                "r2".to_string(),
            ),
        ];
        let m = key_mismatches(&ours, &fleet);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "audit.secret");
        assert_eq!(
            (
                m[0].ours.as_str(),
                m[0].fleet.as_str(),
                m[0].set_by.as_str()
            ),
            ("bb", "zz", "r2")
        );
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let nonce = [7u8; 16];
        for m in [
            BusMessage::Revoked {
                nonce,
                expires_at: 42,
            },
            BusMessage::Seen(vec![nonce, [1u8; 16]]),
            BusMessage::Seen(Vec::new()),
            BusMessage::Catalog,
            BusMessage::Event {
                nonce,
                id: 1_700_000_000_000_001,
                message: b"{\"a\": 1, \"b\": \" x \"}".to_vec(),
            },
        ] {
            let bytes = encode("rep1", &m);
            assert_eq!(decode(&bytes), Some(("rep1".to_string(), m)));
        }
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"r rep1 nothex 5"), None);
        assert_eq!(decode(b"x rep1"), None);
        // The event script publishes the stream id as Redis assigned it.
        let (_, m) = decode(b"e rep2 07070707070707070707070707070707 1733250000000-3 {}").unwrap();
        assert_eq!(
            m,
            BusMessage::Event {
                nonce,
                id: 1_733_250_000_000_003,
                message: b"{}".to_vec()
            }
        );
        assert_eq!(
            decode(b"e rep1 07070707070707070707070707070707 notanumber {}"),
            None
        );
    }

    #[test]
    fn stream_ids_map_to_growing_event_ids_and_back() {
        let a = event_id("1733250000000-0").unwrap();
        let b = event_id("1733250000000-1").unwrap();
        let c = event_id("1733250000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(range_after(b), "(1733250000000-1");
        assert_eq!(event_id("junk"), None);
        assert_eq!(event_id("1-x"), None);
    }
}
