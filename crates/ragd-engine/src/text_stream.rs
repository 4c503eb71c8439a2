//! From generated token ids to streamed text.
//!
//! [`IncrementalDecoder`] turns a growing list of token ids into text
//! deltas that never end in a broken UTF-8 character (byte-level BPE splits
//! multi-byte characters across tokens). [`StopMatcher`] then finds stop
//! strings across delta boundaries and keeps them, and whatever might still
//! become one, from the client.

/// Token ids in, text deltas out, never a partial character.
///
/// The prefix-offset/read-offset technique (as in text-generation-inference):
/// the ids from `prefix_offset` to `read_offset` were already emitted and are
/// decoded again as context (so that decoders which treat the first token
/// specially, e.g. dropping a leading space, decode the new ids as they would
/// in the whole text); the delta is what decoding from `prefix_offset` to the
/// end adds to it, held back while it ends in U+FFFD (an incomplete
/// character).
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl IncrementalDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// All the ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Adds a token; returns the text it completes (possibly empty).
    pub fn push(&mut self, token: u32, decode: &dyn Fn(&[u32]) -> String) -> String {
        self.ids.push(token);
        self.delta(decode, false)
    }

    /// The text still held back at the end of generation (an incomplete
    /// character comes out as the decoder renders it, e.g. U+FFFD).
    pub fn finish(&mut self, decode: &dyn Fn(&[u32]) -> String) -> String {
        self.delta(decode, true)
    }

    fn delta(&mut self, decode: &dyn Fn(&[u32]) -> String, last: bool) -> String {
        if self.read_offset == self.ids.len() {
            return String::new();
        }
        let prefix_text = decode(&self.ids[self.prefix_offset..self.read_offset]);
        let new_text = decode(&self.ids[self.prefix_offset..]);
        if new_text.len() <= prefix_text.len() || (!last && new_text.ends_with('\u{FFFD}')) {
            return String::new();
        }
        // The context normally decodes to a prefix of the longer text; if a
        // decoder ever disagrees, cut on a character boundary rather than panic.
        let mut start = prefix_text.len();
        while !new_text.is_char_boundary(start) {
            start -= 1;
        }
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        new_text[start..].to_string()
    }
}

/// What [`StopMatcher::push`] lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopStep {
    /// Text that may be sent to the client now.
    pub text: String,
    /// A stop string was found: `text` is everything before it, and
    /// generation should end.
    pub stopped: bool,
}

/// Stop strings, matched across delta boundaries and never emitted.
///
/// Text that could still be the start of a stop string is held back until
/// it either completes one (and is dropped) or cannot any more (and is
/// released). When several stop strings occur, the one that starts first in
/// the text wins.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Length in bytes of the longest stop string.
    max_len: usize,
    /// Text received but not yet emitted.
    pending: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        let stops: Vec<String> = stops.into_iter().filter(|s| !s.is_empty()).collect();
        let max_len = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            stops,
            max_len,
            pending: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string has been found.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds a delta of generated text.
    pub fn push(&mut self, delta: &str) -> StopStep {
        if self.stopped {
            return StopStep {
                text: String::new(),
                stopped: true,
            };
        }
        self.pending.push_str(delta);

        // What was pending before held no complete stop string, so a match
        // found now ends in the new text; the earliest one wins.
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(pos) = found {
            let mut text = std::mem::take(&mut self.pending);
            text.truncate(pos);
            self.stopped = true;
            return StopStep { text, stopped: true };
        }

        let hold = self.hold_start();
        let text = self.pending[..hold].to_string();
        self.pending.drain(..hold);
        StopStep { text, stopped: false }
    }

    /// The text held back at the end of generation (empty after a stop).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Where the longest suffix of `pending` that begins some stop string
    /// starts (`pending.len()` when none does). Such a suffix is shorter
    /// than the longest stop string, as no stop string is in `pending`.
    fn hold_start(&self) -> usize {
        let p = &self.pending;
        let earliest = p.len().saturating_sub(self.max_len.saturating_sub(1));
        (earliest..p.len())
            .filter(|&i| p.is_char_boundary(i))
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&p[i..])))
            .unwrap_or(p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary: each id stands for some bytes; decoding
    /// concatenates them, lossily, as a byte-level BPE decoder does.
    struct Vocab(Vec<Vec<u8>>);

    impl Vocab {
        fn decode(&self, ids: &[u32]) -> String {
            let bytes: Vec<u8> = ids
                .iter()
                .flat_map(|&i| self.0[i as usize].iter().copied())
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    /// Every delta, the one from `finish` last.
    fn stream(decode: &dyn Fn(&[u32]) -> String, ids: &[u32]) -> Vec<String> {
        let mut dec = IncrementalDecoder::new();
        let mut out: Vec<String> = ids.iter().map(|&t| dec.push(t, decode)).collect();
        out.push(dec.finish(decode));
        assert_eq!(dec.ids(), ids);
        out
    }

    #[test]
    fn multibyte_characters_split_over_tokens_come_out_whole() {
        // "Hi", "é" as C3 | A9, "😀" (F0 9F 98 80) over four tokens, "!".
        let vocab = Vocab(vec![
            b"Hi".to_vec(),
            vec![0xC3],
            vec![0xA9],
            vec![0xF0],
            vec![0x9F],
            vec![0x98],
            vec![0x80],
            b"!".to_vec(),
        ]);
        let decode = |ids: &[u32]| vocab.decode(ids);
        let ids = [0, 1, 2, 3, 4, 5, 6, 7];
        let deltas = stream(&decode, &ids);
        assert_eq!(deltas, ["Hi", "", "é", "", "", "", "😀", "!", ""]);
        assert_eq!(deltas.concat(), decode(&ids));
        assert_eq!(deltas.concat(), "Hié😀!");
    }

    #[test]
    fn tokens_that_end_and_start_characters() {
        // "aé" as [a C3] [A9 b]; "中" (E4 B8 AD) as [E4 B8] [AD].
        let vocab = Vocab(vec![
            vec![b'a', 0xC3],
            vec![0xA9, b'b'],
            vec![0xE4, 0xB8],
            vec![0xAD],
            b" ".to_vec(),
        ]);
        let decode = |ids: &[u32]| vocab.decode(ids);
        for ids in [
            vec![0, 1, 2, 3],
            vec![2, 3, 0, 1, 4, 2, 3, 2, 3],
            vec![4, 0, 1, 0, 1],
        ] {
            let deltas = stream(&decode, &ids);
            assert_eq!(deltas.concat(), decode(&ids), "{ids:?}");
            assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')), "{deltas:?}");
        }
        // "a" comes out with the "é" its token starts.
        assert_eq!(stream(&decode, &[0, 1]), ["", "aéb", ""]);
    }

    #[test]
    fn finish_releases_an_incomplete_tail_and_invalid_bytes_pass() {
        let vocab = Vocab(vec![
            b"ok".to_vec(),
            vec![0xF0],
            vec![0x9F],
            vec![0xFF],
            b"a".to_vec(),
        ]);
        let decode = |ids: &[u32]| vocab.decode(ids);
        // Ends mid-character: finish gives what the decoder makes of it.
        let deltas = stream(&decode, &[0, 1, 2]);
        assert_eq!(deltas, ["ok", "", "", "\u{FFFD}"]);
        assert_eq!(deltas.concat(), decode(&[0, 1, 2]));
        // A byte that starts no character is not waited on forever.
        let deltas = stream(&decode, &[3, 4, 0]);
        assert_eq!(deltas, ["", "\u{FFFD}a", "ok", ""]);
        // Nothing pushed, or everything already out: finish is empty.
        assert_eq!(IncrementalDecoder::new().finish(&decode), "");
    }

    #[test]
    fn arbitrary_byte_splits_reassemble_exactly() {
        let text = "Grüße, 世界! 😀🎉 naïve café — ok";
        let bytes = text.as_bytes();
        for size in 1..=5 {
            let vocab = Vocab(bytes.chunks(size).map(<[u8]>::to_vec).collect());
            let decode = |ids: &[u32]| vocab.decode(ids);
            let ids: Vec<u32> = (0..vocab.0.len() as u32).collect();
            let deltas = stream(&decode, &ids);
            assert_eq!(deltas.concat(), text, "chunks of {size}");
            assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')));
        }
    }

    #[test]
    fn the_prefix_window_keeps_decoder_context() {
        // A SentencePiece-like decoder drops the leading space of its first
        // token: each delta must still carry its space.
        let words = [" Hello", " wor", "ld", ",", " there"];
        let decode = |ids: &[u32]| {
            let s: String = ids.iter().map(|&i| words[i as usize]).collect();
            s.strip_prefix(' ').map(str::to_string).unwrap_or(s)
        };
        let deltas = stream(&decode, &[0, 1, 2, 3, 4]);
        assert_eq!(deltas, ["Hello", " wor", "ld", ",", " there", ""]);
        assert_eq!(deltas.concat(), decode(&[0, 1, 2, 3, 4]));
    }

    /// Pushes the deltas; returns the text let through (flushed at the end
    /// when no stop matched) and whether it stopped.
    fn run(stops: &[&str], deltas: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        let mut stopped = false;
        for d in deltas {
            let step = m.push(d);
            assert!(
                !stopped || (step.stopped && step.text.is_empty()),
                "text after a stop"
            );
            out.push_str(&step.text);
            stopped = step.stopped;
        }
        assert_eq!(m.stopped(), stopped);
        let rest = m.flush();
        assert!(!stopped || rest.is_empty());
        out.push_str(&rest);
        (out, stopped)
    }

    #[test]
    fn stop_split_across_deltas() {
        let mut m = StopMatcher::new(vec!["lo W".into()]);
        let a = m.push("Hel");
        // "l" might begin "lo W": held back.
        assert_eq!(
            a,
            StopStep {
                text: "He".into(),
                stopped: false
            }
        );
        let b = m.push("lo W");
        assert_eq!(
            b,
            StopStep {
                text: "l".into(),
                stopped: true
            }
        );
        assert_eq!(
            m.push("orld"),
            StopStep {
                text: String::new(),
                stopped: true
            }
        );
        assert_eq!(m.flush(), "");
        assert_eq!(run(&["lo W"], &["Hel", "lo W", "orld"]), ("Hel".into(), true));
        assert_eq!(
            run(&["lo W"], &["H", "e", "l", "l", "o", " ", "W", "x"]),
            ("Hel".into(), true)
        );
    }

    #[test]
    fn overlapping_prefixes() {
        let text = "abcabcabd";
        let want = ("abc".to_string(), true);
        assert_eq!(run(&["abcabd"], &[text]), want);
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run(&["abcabd"], &chars), want);
        assert_eq!(run(&["abcabd"], &["abcab", "cab", "d"]), want);
        assert_eq!(run(&["aab"], &["a", "a", "a", "a", "b"]), ("aa".into(), true));
    }

    #[test]
    fn held_text_is_released_when_the_match_fails() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("ab ST").text, "ab ");
        assert_eq!(m.push("O").text, "");
        assert_eq!(m.push("RM").text, "STORM");
        assert_eq!(m.push(" S").text, " ");
        assert_eq!(m.flush(), "S");
        // Nothing held after a failed match that leaves no prefix.
        assert_eq!(run(&["STOP"], &["ST", "AR", "T"]), ("START".into(), false));
        assert_eq!(run(&["END"], &["the EN"]), ("the EN".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["world", "lo"], &["hello world"]), ("hel".into(), true));
        assert_eq!(run(&["lo", "world"], &["hello world"]), ("hel".into(), true));
        assert_eq!(run(&["xyz", "bc"], &["ab", "cxyz"]), ("a".into(), true));
        // In one delta both complete: the one that starts first.
        assert_eq!(run(&["cd", "bcde"], &["a", "bcdef"]), ("a".into(), true));
        // Held back for the longer stop, released up to the shorter match.
        let mut m = StopMatcher::new(vec!["a long stop".into(), "x".into()]);
        assert_eq!(m.push("say a lo").text, "say ");
        assert_eq!(
            m.push("ng x"),
            StopStep {
                text: "a long ".into(),
                stopped: true
            }
        );
    }

    #[test]
    fn unicode_stops_and_text() {
        assert_eq!(run(&["ß€"], &["aß", "€b"]), ("a".into(), true));
        assert_eq!(run(&["é"], &["caf", "é au lait"]), ("caf".into(), true));
        let mut m = StopMatcher::new(vec!["日本語".into()]);
        assert_eq!(m.push("今日").text, "今");
        assert_eq!(m.push("本").text, "");
        assert_eq!(m.push("x").text, "日本x");
        assert_eq!(m.flush(), "");
        // A stop sharing a first byte (not a character) with the text holds nothing.
        let mut m = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(m.push("è").text, "è");
        assert_eq!(run(&["🎉🎉"], &["a🎉", "b🎉", "🎉c"]), ("a🎉b".into(), true));
    }

    #[test]
    fn no_stops_is_a_passthrough() {
        for stops in [vec![], vec![String::new()]] {
            let mut m = StopMatcher::new(stops);
            for d in ["Hel", "", "lo 世", "界"] {
                assert_eq!(
                    m.push(d),
                    StopStep {
                        text: d.into(),
                        stopped: false
                    }
                );
            }
            assert_eq!(m.flush(), "");
        }
    }

    #[test]
    fn any_chunking_gives_the_reference_result() {
        let cases: [(&str, &[&str]); 4] = [
            ("one two three four", &["three", "o t"]),
            ("abababc ababc", &["ababc", "bac"]),
            ("voilà: ça marche ✓ fin", &["ça m", "✓ f", "zz"]),
            ("no match here at all", &["xyz", "hereat"]),
        ];
        for (text, stops) in cases {
            let reference = stops.iter().filter_map(|s| text.find(s)).min();
            let want = (
                reference.map_or(text, |p| &text[..p]).to_string(),
                reference.is_some(),
            );
            let chars: Vec<char> = text.chars().collect();
            for size in 1..=6 {
                let deltas: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
                let deltas: Vec<&str> = deltas.iter().map(String::as_str).collect();
                assert_eq!(run(stops, &deltas), want, "{text:?} in chunks of {size}");
            }
        }
    }
}
