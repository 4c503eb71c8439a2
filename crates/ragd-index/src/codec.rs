//! A tiny little-endian binary encoding for log records and snapshots.
//!
//! Vectors are stored as raw `f32` bits so that replay rebuilds exactly the
//! vectors that were written (a text format would round-trip them through
//! decimal), and no serialisation framework decides the on-disk format.

/// Appends values to a byte buffer.
#[derive(Default)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A length as u64 (usize is not portable on disk).
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn f32s(&mut self, v: &[f32]) {
        self.len(v.len());
        self.buf.reserve(v.len() * 4);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Why a buffer could not be decoded.
#[derive(Debug)]
pub(crate) struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type DecodeResult<T> = std::result::Result<T, DecodeError>;

/// Reads values back in the order they were encoded.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| DecodeError(format!("truncated: need {n} bytes at offset {}", self.pos)))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length, checked against what is left so a corrupt length cannot
    /// trigger a huge allocation (`unit` is the size of one element).
    pub fn len(&mut self, unit: usize) -> DecodeResult<usize> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(unit.max(1) as u64) > left {
            return Err(DecodeError(format!("length {n} exceeds the {left} bytes left")));
        }
        Ok(n as usize)
    }

    pub fn str(&mut self) -> DecodeResult<String> {
        let n = self.len(1)?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("string is not UTF-8".into()))
    }

    pub fn f32s(&mut self) -> DecodeResult<Vec<f32>> {
        let n = self.len(4)?;
        let bytes = self.take(n * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Fails unless every byte was consumed (trailing bytes mean a format bug).
    pub fn finish(self) -> DecodeResult<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} trailing bytes",
                self.buf.len() - self.pos
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        let mut e = Encoder::default();
        e.u8(7);
        e.u64(u64::MAX);
        e.str("héllo");
        e.f32s(&[1.5, -0.0, f32::MIN_POSITIVE, 1e-40]);
        let bytes = e.into_bytes();

        let mut d = Decoder::new(&bytes);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u64().unwrap(), u64::MAX);
        assert_eq!(d.str().unwrap(), "héllo");
        let v = d.f32s().unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3].to_bits(), 1e-40f32.to_bits());
        d.finish().unwrap();

        for cut in 0..bytes.len() {
            let mut d = Decoder::new(&bytes[..cut]);
            let ok = d.u8().is_ok() && d.u64().is_ok() && d.str().is_ok() && d.f32s().is_ok();
            assert!(!ok, "decoding {cut} bytes must fail");
        }
    }
}
