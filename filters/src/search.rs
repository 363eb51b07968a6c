//! Ranked tool search and compact descriptions: the pure half of `find_tools` and of the
//! catalog's search mode.
//!
//! Cortex answers `find_tools {query}` with the first ten tools whose name or description
//! contains the query as a substring. That misses "send an email" → `mail_send_message` and
//! returns tools in catalog order, not by relevance. Here every tool is a document (its name,
//! weighted, plus its description), and a query is ranked with Okapi BM25:
//!
//! - [`tokenize`] lowercases, splits on anything that is not a letter or digit (so
//!   `snake_case`, `kebab-case`, `dotted.names` and `mcp:crm:read` split), splits `camelCase`
//!   and `HTTPServer`-style runs, drops a few English stop words and strips a plural `s`.
//! - Name tokens count [`NAME_WEIGHT`] times, so a word in a tool's name outranks the same
//!   word buried in a long description.
//! - A query word that is in no document may match words it is a prefix of (`calend` →
//!   `calendar`), at a discount, so partial words still find something.
//! - A query equal to a tool's whole name (exposed or original) ranks that tool first.
//! - Ties break by name, so results are deterministic.
//!
//! [`one_sentence`] makes the short descriptions of search mode.

use std::collections::HashMap;

/// BM25 term-frequency saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation.
const B: f32 = 0.75;
/// How many times a name token counts compared with a description token.
pub const NAME_WEIGHT: u32 = 3;
/// Score factor of a prefix match compared with an exact term match.
const PREFIX_DISCOUNT: f32 = 0.5;
/// Shortest query word that may match by prefix.
const MIN_PREFIX_LEN: usize = 3;
/// Most vocabulary words one query word may expand to by prefix.
const MAX_PREFIX_EXPANSIONS: usize = 8;
/// Bonus for a query that is exactly a tool's name (larger than any BM25 score).
const EXACT_NAME_BONUS: f32 = 1_000.0;
/// Longest query considered, in characters (longer input is cut, never refused).
pub const MAX_QUERY_CHARS: usize = 1_000;

/// Words too common to say anything about a tool.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "that", "the", "this", "to", "with", "you", "your",
];

/// Splits text into search terms (see the module documentation).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        for part in split_case(word) {
            let lower = part.to_lowercase();
            if STOP_WORDS.contains(&lower.as_str()) {
                continue;
            }
            out.push(stem(lower));
        }
    }
    out
}

/// Splits `camelCase`, `PascalCase` and `HTTPServer` (→ `HTTP`, `Server`); digits stay with
/// the letters before them (`v2`, `sha256`).
fn split_case(word: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = word.char_indices().collect();
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 1..chars.len() {
        let (pos, c) = chars[i];
        let prev = chars[i - 1].1;
        let next_is_lower = chars.get(i + 1).is_some_and(|(_, n)| n.is_lowercase());
        let boundary = c.is_uppercase()
            && (prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower));
        if boundary {
            parts.push(&word[start..pos]);
            start = pos;
        }
    }
    parts.push(&word[start..]);
    parts
}

/// A deliberately light stemmer: plural `s` only (`contacts` → `contact`, `invoices` →
/// `invoice`), keeping `ss` (`address`) and short words (`bus`, `is`).
fn stem(mut word: String) -> String {
    if word.len() > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") {
        word.pop();
    }
    word
}

/// One document to index: a tool.
#[derive(Debug, Clone, Copy)]
pub struct SearchDoc<'a> {
    /// The name callers use (e.g. `crm_list_contacts`).
    pub name: &'a str,
    /// Another name the tool answers to for exact matching (e.g. the backend's own
    /// `list_contacts`), if any.
    pub alt_name: Option<&'a str>,
    /// The description.
    pub description: &'a str,
}

/// One ranked result: the document's position in the input and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Index of the document in the order given to [`Bm25Index::build`].
    pub doc: usize,
    /// Relevance (higher is better); only comparable within one query.
    pub score: f32,
}

#[derive(Debug, Clone)]
struct DocInfo {
    len: f32,
    name: String,
    alt_name: Option<String>,
}

/// An inverted index over tool documents, ranked with BM25.
#[derive(Debug, Clone, Default)]
pub struct Bm25Index {
    docs: Vec<DocInfo>,
    /// term → (document, weighted term frequency), documents ascending.
    postings: HashMap<String, Vec<(u32, f32)>>,
    /// Every term, sorted, for prefix expansion.
    vocabulary: Vec<String>,
    avg_len: f32,
}

impl Bm25Index {
    /// Indexes `docs`; hits refer to them by position.
    pub fn build<'a>(docs: impl IntoIterator<Item = SearchDoc<'a>>) -> Self {
        let mut infos = Vec::new();
        let mut postings: HashMap<String, Vec<(u32, f32)>> = HashMap::new();
        for (i, doc) in docs.into_iter().enumerate() {
            let mut tf: HashMap<String, f32> = HashMap::new();
            for t in tokenize(doc.name) {
                *tf.entry(t).or_default() += NAME_WEIGHT as f32;
            }
            for t in tokenize(doc.description) {
                *tf.entry(t).or_default() += 1.0;
            }
            let len: f32 = tf.values().sum();
            for (term, f) in tf {
                postings.entry(term).or_default().push((i as u32, f));
            }
            infos.push(DocInfo {
                len,
                name: doc.name.to_lowercase(),
                alt_name: doc.alt_name.map(str::to_lowercase),
            });
        }
        let avg_len = if infos.is_empty() {
            1.0
        } else {
            (infos.iter().map(|d| d.len).sum::<f32>() / infos.len() as f32).max(1.0)
        };
        let mut vocabulary: Vec<String> = postings.keys().cloned().collect();
        vocabulary.sort();
        Bm25Index {
            docs: infos,
            postings,
            vocabulary,
            avg_len,
        }
    }

    /// Number of indexed documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The best `limit` documents for `query` among those `allowed` accepts, best first.
    /// Documents that match no query word are never returned.
    pub fn search(&self, query: &str, allowed: impl Fn(usize) -> bool, limit: usize) -> Vec<Hit> {
        let query: String = query.chars().take(MAX_QUERY_CHARS).collect();
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let mut terms = tokenize(&query);
        terms.sort();
        terms.dedup();
        for term in &terms {
            if self.postings.contains_key(term) {
                self.accumulate(term, 1.0, &mut scores);
            } else if term.chars().count() >= MIN_PREFIX_LEN {
                for expansion in self.prefix_expansions(term) {
                    self.accumulate(expansion, PREFIX_DISCOUNT, &mut scores);
                }
            }
        }
        let whole = query.trim().to_lowercase();
        if !whole.is_empty() {
            for (i, d) in self.docs.iter().enumerate() {
                if d.name == whole || d.alt_name.as_deref() == Some(whole.as_str()) {
                    *scores.entry(i as u32).or_default() += EXACT_NAME_BONUS;
                }
            }
        }
        let mut hits: Vec<Hit> = scores
            .into_iter()
            .filter(|(d, s)| *s > 0.0 && allowed(*d as usize))
            .map(|(d, score)| Hit {
                doc: d as usize,
                score,
            })
            .collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| self.docs[a.doc].name.cmp(&self.docs[b.doc].name))
        });
        hits.truncate(limit);
        hits
    }

    /// Vocabulary words starting with `prefix` (a bounded number).
    fn prefix_expansions<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let start = self.vocabulary.partition_point(|w| w.as_str() < prefix);
        self.vocabulary[start..]
            .iter()
            .take_while(move |w| w.starts_with(prefix))
            .take(MAX_PREFIX_EXPANSIONS)
            .map(String::as_str)
    }

    /// Adds `weight` × the BM25 contribution of `term` to every document containing it.
    fn accumulate(&self, term: &str, weight: f32, scores: &mut HashMap<u32, f32>) {
        let Some(list) = self.postings.get(term) else {
            return;
        };
        let n = self.docs.len() as f32;
        let df = list.len() as f32;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        for &(doc, tf) in list {
            let len = self.docs[doc as usize].len;
            let norm = tf + K1 * (1.0 - B + B * len / self.avg_len);
            *scores.entry(doc).or_default() += weight * idf * tf * (K1 + 1.0) / norm;
        }
    }
}

/// The short description of search mode: the leading `[…] ` tags (the `[app] ` prefix, a
/// deprecation notice) kept, then the first sentence of the first line, at most `max_chars`
/// characters in all (cut at a word boundary with `…` when longer).
pub fn one_sentence(description: &str, max_chars: usize) -> String {
    let first_line = description.lines().next().unwrap_or("").trim_end();
    let body_start = leading_tags_len(first_line);
    let (tags, body) = first_line.split_at(body_start);
    let sentence = first_sentence(body.trim_start());
    let mut out = String::with_capacity(tags.len() + sentence.len());
    out.push_str(tags);
    out.push_str(sentence);
    truncate_words(out.trim_end(), max_chars)
}

/// Byte length of the `[…] ` groups at the start of `s` (balanced brackets, each followed by
/// spaces).
fn leading_tags_len(s: &str) -> usize {
    let mut pos = 0;
    loop {
        let rest = &s[pos..];
        if !rest.starts_with('[') {
            return pos;
        }
        let mut depth = 0usize;
        let mut close = None;
        for (i, c) in rest.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else { return pos };
        let after = &rest[close + 1..];
        let spaces = after.len() - after.trim_start_matches(' ').len();
        if spaces == 0 && !after.is_empty() {
            return pos;
        }
        pos += close + 1 + spaces;
    }
}

/// Text up to and including the first `.`, `!` or `?` that ends the text or is followed by
/// whitespace (so `v1.2` and `e.g.x` do not end a sentence).
fn first_sentence(s: &str) -> &str {
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if matches!(c, '.' | '!' | '?') {
            match iter.peek() {
                None => return s,
                Some((_, n)) if n.is_whitespace() => return &s[..i + c.len_utf8()],
                Some(_) => {}
            }
        }
    }
    s
}

/// `s` if it has at most `max` characters; otherwise cut at the last space that leaves room
/// for `…` (or mid-word when there is none) and `…` appended.
fn truncate_words(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let keep = max - 1;
    let cut = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    let head = &s[..cut];
    let head = match head.rfind(' ') {
        Some(sp) if sp > cut / 2 => &head[..sp],
        _ => head,
    };
    format!("{}…", head.trim_end_matches([' ', ',', ';', ':']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc<'a>(name: &'a str, description: &'a str) -> SearchDoc<'a> {
        SearchDoc {
            name,
            alt_name: None,
            description,
        }
    }

    #[test]
    fn tokenize_splits_cases_and_separators() {
        assert_eq!(
            tokenize("crm_listContacts HTTPServer mcp:crm:read v2-api sha256"),
            vec![
                "crm", "list", "contact", "http", "server", "mcp", "crm", "read", "v2", "api",
                "sha256"
            ]
        );
        assert_eq!(tokenize("The address of a bus"), vec!["address", "bus"]);
        assert_eq!(tokenize(""), Vec::<String>::new());
        assert_eq!(tokenize("__--::"), Vec::<String>::new());
        assert_eq!(tokenize("Ünïcode Straße"), vec!["ünïcode", "straße"]);
    }

    fn catalog() -> Bm25Index {
        Bm25Index::build([
            doc(
                "crm_list_contacts",
                "[crm] Lists the contacts of an account.",
            ),
            doc("crm_create_contact", "[crm] Creates a contact."),
            doc(
                "mail_send_message",
                "[mail] Sends an email message to one or more recipients.",
            ),
            doc(
                "calendar_create_event",
                "[calendar] Creates an event in a calendar.",
            ),
            doc(
                "notes_search",
                "[notes] Full-text search over notes; mentions email sometimes.",
            ),
        ])
    }

    fn names(idx: &Bm25Index, hits: &[Hit]) -> Vec<String> {
        hits.iter().map(|h| idx.docs[h.doc].name.clone()).collect()
    }

    #[test]
    fn ranks_by_relevance_not_catalog_order() {
        let idx = catalog();
        let hits = idx.search("send an email", |_| true, 10);
        let n = names(&idx, &hits);
        assert_eq!(n[0], "mail_send_message");
        assert!(n.contains(&"notes_search".to_string()));
        assert!(hits[0].score > hits[1].score);
    }

    #[test]
    fn name_words_outrank_description_words() {
        let idx = Bm25Index::build([
            doc("notes_search", "Search notes; mentions an email once."),
            doc("email_archive", "Archives old items of the mailbox."),
        ]);
        let n = names(&idx, &idx.search("email", |_| true, 10));
        assert_eq!(n, vec!["email_archive", "notes_search"]);
        let idx = catalog();
        let n = names(&idx, &idx.search("contacts", |_| true, 10));
        assert_eq!(n.len(), 2);
        assert!(n.iter().all(|t| t.contains("contact")));
    }

    #[test]
    fn prefix_matches_partial_words() {
        let idx = catalog();
        let n = names(&idx, &idx.search("calend", |_| true, 10));
        assert_eq!(n, vec!["calendar_create_event"]);
        // Too short to expand.
        assert!(idx.search("ca", |_| true, 10).is_empty());
    }

    #[test]
    fn exact_name_ranks_first_and_filter_and_limit_apply() {
        let idx = catalog();
        let n = names(&idx, &idx.search("crm_create_contact", |_| true, 10));
        assert_eq!(n[0], "crm_create_contact");
        let hidden = idx.search("crm_create_contact", |d| d != 1, 10);
        assert!(hidden.iter().all(|h| h.doc != 1));
        assert_eq!(idx.search("create", |_| true, 1).len(), 1);
        assert!(idx.search("zzz unknown", |_| true, 10).is_empty());
        assert!(idx.search("", |_| true, 10).is_empty());
        assert!(idx.search("the of a", |_| true, 10).is_empty());
    }

    #[test]
    fn alt_names_match_exactly() {
        let idx = Bm25Index::build([
            SearchDoc {
                name: "crm_get",
                alt_name: Some("get"),
                description: "Gets.",
            },
            doc("erp_other", "Get everything you could get, get, get."),
        ]);
        assert_eq!(names(&idx, &idx.search("get", |_| true, 10))[0], "crm_get");
    }

    #[test]
    fn ties_break_by_name() {
        let idx = Bm25Index::build([doc("b_x", "same"), doc("a_x", "same")]);
        assert_eq!(
            names(&idx, &idx.search("same", |_| true, 10)),
            vec!["a_x", "b_x"]
        );
        assert!(Bm25Index::build([]).search("x", |_| true, 5).is_empty());
    }

    #[test]
    fn one_sentence_keeps_tags_and_the_first_sentence() {
        assert_eq!(
            one_sentence(
                "[demo] Echoes a message. Use it to test.\nSecond line.",
                120
            ),
            "[demo] Echoes a message."
        );
        assert_eq!(
            one_sentence(
                "[crm] [DEPRECATED — removal 2026-01-01, use crm_new] Gets v1.2 data! More",
                120
            ),
            "[crm] [DEPRECATED — removal 2026-01-01, use crm_new] Gets v1.2 data!"
        );
        assert_eq!(one_sentence("No period at all", 120), "No period at all");
        assert_eq!(one_sentence("", 120), "");
        assert_eq!(one_sentence("[erp]", 120), "[erp]");
    }

    #[test]
    fn one_sentence_is_bounded_in_characters() {
        let long = format!("[app] {}.", "wörd ".repeat(60));
        let short = one_sentence(&long, 120);
        assert!(short.chars().count() <= 120, "{short}");
        assert!(short.ends_with('…'));
        assert!(short.starts_with("[app] wörd"));
        let unbroken = format!("[app] {}", "x".repeat(300));
        let cut = one_sentence(&unbroken, 120);
        assert_eq!(cut.chars().count(), 120);
        assert_eq!(one_sentence("abc", 0), "");
    }
}
