//! A strict reader for a pickled `tiktoken.core.Encoding` (`tokenizer.pkl`).
//!
//! Python pickles an `Encoding` as `Encoding.__new__()` followed by a
//! `BUILD` with the state dict `{name, pat_str, mergeable_ranks,
//! special_tokens}`. candle's pickle reader stops at protocol 4 opcodes, so
//! this reads exactly the opcodes such a file uses and rejects anything
//! else with the opcode and its offset: no code is ever run, and no class
//! other than `tiktoken.core.Encoding` is accepted.
//!
//! Hostile files cost at most linear memory and bounded recursion: strings
//! are shared, not copied, when the memo or the stack repeats them; the memo
//! never copies a container (it cannot be fetched back anyway); containers
//! nest at most [`MAX_DEPTH`] deep (seen through the `tiktoken_pickle` fuzz
//! target: a 44 KB file that memoised a dict over and over took gigabytes,
//! and a 400 KB one of nested dicts overflowed the stack).

use std::collections::HashMap;
use std::rc::Rc;

/// Deepest nesting of containers accepted; a real encoding nests 3 deep
/// (the object, its state dict, the dicts in it).
const MAX_DEPTH: usize = 32;

/// What the tokenizer needs from the pickled encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiktokenState {
    pub name: String,
    /// The pre-tokenisation split pattern (a fancy-regex pattern).
    pub pattern: String,
    /// Byte sequence -> token id.
    pub mergeable_ranks: Vec<(Vec<u8>, u32)>,
    /// Special token text -> token id.
    pub special_tokens: Vec<(String, u32)>,
}

/// A pickled value, limited to what a tiktoken encoding contains. Strings
/// are reference-counted: a memo fetch or a memoisation copies a pointer.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Int(i64),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global {
        module: Rc<str>,
        name: Rc<str>,
    },
    Object {
        class: Box<Value>,
        state: Option<Box<Value>>,
    },
    Mark,
}

impl Value {
    fn is_shareable(&self) -> bool {
        matches!(
            self,
            Value::Str(_) | Value::Bytes(_) | Value::Int(_) | Value::Global { .. }
        )
    }

    /// Containers nested in this value, itself included. Recursion is
    /// bounded: every container was checked when it got its content.
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Dict(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0)
            }
            Value::Object { state, .. } => 1 + state.as_ref().map_or(0, |s| s.depth()),
            _ => 0,
        }
    }
}

/// Checks that `value` may go inside a container.
fn nestable(value: &Value, at: usize) -> Result<(), String> {
    if value.depth() >= MAX_DEPTH {
        return Err(format!("containers nested over {MAX_DEPTH} deep at offset {at}"));
    }
    Ok(())
}

/// Parses `bytes` and extracts the encoding's state.
pub fn parse_tiktoken_pickle(bytes: &[u8]) -> Result<TiktokenState, String> {
    let root = Machine::new(bytes).run()?;
    let Value::Object { class, state } = root else {
        return Err("the pickle does not hold an object".into());
    };
    match *class {
        Value::Global { ref module, ref name } if &**module == "tiktoken.core" && &**name == "Encoding" => {}
        other => return Err(format!("expected a tiktoken.core.Encoding, found {other:?}")),
    }
    let Some(Value::Dict(state)) = state.map(|s| *s) else {
        return Err("the Encoding has no state dict".into());
    };
    let mut fields: HashMap<String, Value> = HashMap::new();
    for (k, v) in state {
        let Value::Str(k) = k else {
            return Err(format!("state key {k:?} is not a string"));
        };
        fields.insert(k.to_string(), v);
    }
    let mut take = |key: &str| fields.remove(key).ok_or_else(|| format!("state has no {key:?}"));
    let name = match take("name")? {
        Value::Str(s) => s.to_string(),
        other => return Err(format!("name is {other:?}")),
    };
    let pattern = match take("pat_str")? {
        Value::Str(s) => s.to_string(),
        other => return Err(format!("pat_str is {other:?}")),
    };
    let mergeable_ranks = dict_entries(take("mergeable_ranks")?, "mergeable_ranks", |k| match k {
        Value::Bytes(b) => Some(b.to_vec()),
        _ => None,
    })?;
    let special_tokens = dict_entries(take("special_tokens")?, "special_tokens", |k| match k {
        Value::Str(s) => Some(s.to_string()),
        _ => None,
    })?;
    Ok(TiktokenState {
        name,
        pattern,
        mergeable_ranks,
        special_tokens,
    })
}

/// The entries of a dict whose keys `key` accepts and whose values are ids.
fn dict_entries<K>(
    value: Value,
    what: &str,
    key: impl Fn(Value) -> Option<K>,
) -> Result<Vec<(K, u32)>, String> {
    let Value::Dict(entries) = value else {
        return Err(format!("{what} is not a dict"));
    };
    entries
        .into_iter()
        .map(|(k, v)| {
            let shown = format!("{k:?}");
            let k = key(k).ok_or_else(|| format!("{what}: unexpected key {shown}"))?;
            let id = match v {
                Value::Int(i) => u32::try_from(i).map_err(|_| format!("{what}: id {i} out of range"))?,
                other => return Err(format!("{what}: value {other:?} is not an int")),
            };
            Ok((k, id))
        })
        .collect()
}

/// The pickle virtual machine, for the opcode subset above.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// `None` for a memoised container, which is never copied (fetching it
    /// back is refused: it may have changed since).
    memo: Vec<Option<Value>>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: Vec::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("truncated pickle at offset {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, len: usize) -> Result<Value, String> {
        let at = self.pos;
        let s = std::str::from_utf8(self.take(len)?).map_err(|e| format!("bad UTF-8 at offset {at}: {e}"))?;
        Ok(Value::Str(s.into()))
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| format!("stack underflow at offset {}", self.pos))
    }

    fn top(&self) -> Result<&Value, String> {
        self.stack
            .last()
            .ok_or_else(|| format!("empty stack at offset {}", self.pos))
    }

    /// Pops everything above the topmost mark, and the mark.
    fn pop_to_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self.stack.iter().rposition(|v| *v == Value::Mark);
        let at = at.ok_or_else(|| format!("no mark on the stack at offset {}", self.pos))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn get(&mut self, idx: usize) -> Result<(), String> {
        let v = self
            .memo
            .get(idx)
            .ok_or_else(|| format!("memo {idx} is not set"))?;
        // A memoised container may have been changed since; copies would be stale.
        let v = v
            .as_ref()
            .ok_or_else(|| format!("shared reference to a container (memo {idx}) is not supported"))?;
        self.stack.push(v.clone());
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            match op {
                0x80 => {
                    let proto = self.byte()?;
                    if !(2..=5).contains(&proto) {
                        return Err(format!("unsupported pickle protocol {proto}"));
                    }
                }
                // FRAME: a buffering hint; the framed bytes follow inline.
                0x95 => {
                    self.take(8)?;
                }
                0x8c => {
                    let n = self.byte()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'C' => {
                    let n = self.byte()? as usize;
                    let b = self.take(n)?.into();
                    self.stack.push(Value::Bytes(b));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.into();
                    self.stack.push(Value::Bytes(b));
                }
                b'K' => {
                    let v = self.byte()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v.into()));
                }
                0x94 => {
                    let v = self.top()?;
                    let v = v.is_shareable().then(|| v.clone());
                    self.memo.push(v);
                }
                b'h' => {
                    let idx = self.byte()? as usize;
                    self.get(idx)?;
                }
                b'j' => {
                    let idx = self.u32()? as usize;
                    self.get(idx)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.stack.push(Value::Global { module, name })
                        }
                        _ => return Err(format!("STACK_GLOBAL without two strings at offset {at}")),
                    }
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    if !matches!(class, Value::Global { .. }) || args != Value::Tuple(Vec::new()) {
                        return Err(format!("unsupported NEWOBJ at offset {at}"));
                    }
                    self.stack.push(Value::Object {
                        class: Box::new(class),
                        state: None,
                    });
                }
                b'u' => {
                    let items = self.pop_to_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(format!("SETITEMS with an odd item count at offset {at}"));
                    }
                    let Some(Value::Dict(dict)) = self.stack.last_mut() else {
                        return Err(format!("SETITEMS without a dict at offset {at}"));
                    };
                    for item in &items {
                        nestable(item, at)?;
                    }
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        dict.push((k, v));
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    nestable(&k, at)?;
                    nestable(&v, at)?;
                    let Some(Value::Dict(dict)) = self.stack.last_mut() else {
                        return Err(format!("SETITEM without a dict at offset {at}"));
                    };
                    dict.push((k, v));
                }
                b'b' => {
                    let new_state = self.pop()?;
                    nestable(&new_state, at)?;
                    let Some(Value::Object { state, .. }) = self.stack.last_mut() else {
                        return Err(format!("BUILD without an object at offset {at}"));
                    };
                    *state = Some(Box::new(new_state));
                }
                b'.' => {
                    let v = self.pop()?;
                    if !self.stack.is_empty() {
                        return Err("values left on the stack at STOP".into());
                    }
                    return Ok(v);
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x} at offset {at}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps` (protocol 4) of a tiny Encoding-like object, written
    /// out by hand with the same opcodes as the real file.
    fn tiny() -> Vec<u8> {
        let mut p = vec![0x80, 4, 0x95];
        p.extend_from_slice(&0u64.to_le_bytes());
        let s = |p: &mut Vec<u8>, t: &str| {
            p.push(0x8c);
            p.push(t.len() as u8);
            p.extend_from_slice(t.as_bytes());
            p.push(0x94);
        };
        s(&mut p, "tiktoken.core");
        s(&mut p, "Encoding");
        p.extend_from_slice(&[0x93, 0x94, b')', 0x81, 0x94, b'}', 0x94, b'(']);
        s(&mut p, "name");
        s(&mut p, "t");
        s(&mut p, "pat_str");
        s(&mut p, "\\w+");
        s(&mut p, "mergeable_ranks");
        p.extend_from_slice(&[
            b'}', 0x94, b'(', b'C', 1, b'a', 0x94, b'K', 0, b'C', 1, b'b', b'M', 1, 0, b'u',
        ]);
        s(&mut p, "special_tokens");
        p.extend_from_slice(b"}(");
        s(&mut p, "<|x|>");
        p.extend_from_slice(&[b'J', 2, 0, 0, 0, b'u', b'u', b'b', b'.']);
        p
    }

    #[test]
    fn reads_the_state() {
        let st = parse_tiktoken_pickle(&tiny()).expect("parse");
        assert_eq!(st.name, "t");
        assert_eq!(st.pattern, "\\w+");
        assert_eq!(st.mergeable_ranks, vec![(b"a".to_vec(), 0), (b"b".to_vec(), 1)]);
        assert_eq!(st.special_tokens, vec![("<|x|>".to_string(), 2)]);
    }

    #[test]
    fn rejects_other_opcodes_and_truncation() {
        let mut p = tiny();
        p[11] = b'R'; // REDUCE instead of SHORT_BINUNICODE
        assert!(parse_tiktoken_pickle(&p).unwrap_err().contains("0x52"));
        let p = tiny();
        assert!(parse_tiktoken_pickle(&p[..p.len() - 3]).is_err());
    }

    /// An `Encoding` whose state dict gets `body` (a key and a value).
    fn encoding_with(body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 4];
        for t in ["tiktoken.core", "Encoding"] {
            p.extend_from_slice(&[0x8c, t.len() as u8]);
            p.extend_from_slice(t.as_bytes());
        }
        p.extend_from_slice(&[0x93, b')', 0x81, b'}']);
        p.extend_from_slice(body);
        p.extend_from_slice(b"sb.");
        p
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // Seen through the fuzz target: 100k nested dicts overflowed the stack
        // (in dropping or printing them).
        let depth = 100_000;
        let mut body = b"}K\x00".repeat(depth);
        body.push(b'}');
        body.extend(std::iter::repeat_n(b's', depth));
        body.extend_from_slice(b"K\x00");
        let err = parse_tiktoken_pickle(&encoding_with(&body)).unwrap_err();
        assert!(err.contains("nested over"), "{err}");
    }

    #[test]
    fn memoising_a_container_or_a_string_copies_nothing() {
        // Seen through the fuzz target: a dict of 4000 entries memoised 20000
        // times took gigabytes; a long string fetched back as many times
        // would have too.
        let mut body = b"}".to_vec();
        for i in 0..4000u16 {
            body.push(b'M');
            body.extend_from_slice(&i.to_le_bytes());
            body.extend_from_slice(b"K\x00s");
        }
        body.extend(std::iter::repeat_n(0x94, 20_000));
        body.extend_from_slice(b"K\x00");
        let err = parse_tiktoken_pickle(&encoding_with(&body)).unwrap_err();
        assert!(err.contains("is not a string"), "{err}");
        let mut p = vec![0x80, 4, b'B'];
        p.extend_from_slice(&(1u32 << 20).to_le_bytes());
        p.extend(std::iter::repeat_n(b'x', 1 << 20));
        p.push(0x94);
        p.extend([b'h', 0].repeat(20_000));
        p.push(b'.');
        // Twenty thousand 1 MB strings would be 20 GB.
        assert!(parse_tiktoken_pickle(&p)
            .unwrap_err()
            .contains("left on the stack"));
    }

    #[test]
    fn rejects_other_classes() {
        let mut p = tiny();
        let at = p.windows(8).position(|w| w == b"Encoding").expect("class name");
        p[at + 7] = b'x';
        let err = parse_tiktoken_pickle(&p).unwrap_err();
        assert!(err.contains("expected a tiktoken.core.Encoding"), "{err}");
    }
}
