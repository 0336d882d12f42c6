//! The router's per-record work, compiled: decode a source change, check it, and for every grant
//! filter, project, mask (keep, hash, redact), derive the key and encode the delivery.
//!
//! It is a fast path, not a second definition of the rules: `exchange/routing/kernel.py` compiles
//! each (entry, writer schema, grants) into a `Reader` spec, and this code only ever says "this
//! record is valid, here are its deliveries" when the Python core would say exactly that, byte
//! for byte (property tests in `tests/unit/routing/test_kernel.py`). Anything it is not sure of
//! (a rejection, an odd encoding, a value it cannot render as Python would) it hands back as a
//! *fallback* index, and the Python core routes that record with its exact reasons.

mod deliveries;
mod digests;
mod state;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use hmac::{Hmac, Mac};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use regex::Regex;
use sha2::Sha256;

use deliveries::{tombstone_headers, Deliveries, NativeProducer};
use digests::{Feed, ReceiptDigest};
use state::{KeyState, StateBatch, StateChanges};

type HmacSha256 = Hmac<Sha256>;

const OP_CREATE: u8 = 0;
const OP_UPDATE: u8 = 1;
const OP_DELETE: u8 = 2;
/// `date(1970, 1, 1).toordinal()`.
const ORDINAL_1970: i64 = 719_163;
/// `date.min` and `date.max` as days since 1970.
const DAYS_MIN: i64 = 1 - ORDINAL_1970;
const DAYS_MAX: i64 = 3_652_059 - ORDINAL_1970;
/// The timestamp-millis values Python's datetime can hold (years 1 to 9999).
const MS_MIN: i64 = -62_135_596_800_000;
const MS_MAX: i64 = 253_402_300_799_999;

// -- Avro values -----------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Str,
    Int,
    Long,
    Bool,
    Float,
    Double,
    Date,
    Decimal { precision: u32, scale: u32 },
}

#[derive(Clone, Copy, Debug)]
enum Val<'a> {
    Null,
    Str(&'a str),
    Int(i64),
    Bool(bool),
    F32([u8; 4]),
    F64([u8; 8]),
    Dec(i128),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Avro's long: zig-zag varint of at most 10 bytes (anything longer or overflowing is left
    /// to the Python path, which decides what it is).
    fn long(&mut self) -> Option<i64> {
        let mut n: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return None;
            }
            n |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    // A padded number (0x80 0x00 for 0): valid to lax readers, not canonical;
                    // the Python path rejects it with its reason.
                    return None;
                }
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.long()?;
        if n < 0 {
            return None;
        }
        self.take(usize::try_from(n).ok()?)
    }

    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn value(&mut self, kind: Kind) -> Option<Val<'a>> {
        Some(match kind {
            Kind::Str => Val::Str(self.string()?),
            Kind::Int => {
                let v = self.long()?;
                if i32::try_from(v).is_err() {
                    return None;
                }
                Val::Int(v)
            }
            Kind::Long => Val::Int(self.long()?),
            Kind::Date => {
                let v = self.long()?;
                if !(DAYS_MIN..=DAYS_MAX).contains(&v) || i32::try_from(v).is_err() {
                    return None;
                }
                Val::Int(v)
            }
            Kind::Bool => match self.byte()? {
                0 => Val::Bool(false),
                1 => Val::Bool(true),
                _ => return None,
            },
            Kind::Float => {
                let raw: [u8; 4] = self.take(4)?.try_into().ok()?;
                // Python widens a float to a double and narrows it back: a NaN's payload may
                // not survive, so NaNs take the Python path.
                if f32::from_le_bytes(raw).is_nan() {
                    return None;
                }
                Val::F32(raw)
            }
            Kind::Double => Val::F64(self.take(8)?.try_into().ok()?),
            Kind::Decimal { precision, .. } => {
                let raw = self.bytes()?;
                if raw.len() > 16 {
                    return None;
                }
                let mut v: i128 = if raw.first().is_some_and(|b| b & 0x80 != 0) {
                    -1
                } else {
                    0
                };
                for b in raw {
                    v = (v << 8) | i128::from(*b);
                }
                // fastavro reads with the schema's precision as context: more digits round.
                if digits(v.unsigned_abs()) > precision {
                    return None;
                }
                Val::Dec(v)
            }
        })
    }
}

fn digits(mut n: u128) -> u32 {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7F) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    put_long(out, data.len() as i64);
    out.extend_from_slice(data);
}

/// A value as fastavro writes it for its (non-null) type.
fn put_value(out: &mut Vec<u8>, val: Val<'_>) {
    match val {
        Val::Null => {}
        Val::Str(s) => put_bytes(out, s.as_bytes()),
        Val::Int(v) => put_long(out, v),
        Val::Bool(b) => out.push(u8::from(b)),
        Val::F32(raw) => out.extend_from_slice(&raw),
        Val::F64(raw) => out.extend_from_slice(&raw),
        Val::Dec(v) => {
            // fastavro sizes a decimal by its magnitude: (bit_length + 8) // 8 bytes.
            let bits = 128 - v.unsigned_abs().leading_zeros();
            let size = ((bits + 8) / 8) as usize;
            let all = v.to_be_bytes();
            put_bytes(out, &all[16 - size..]);
        }
    }
}

/// `date.fromordinal(days + 719163).isoformat()`.
fn iso_date(days: i64, out: &mut String) {
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}");
}

/// Howard Hinnant's days-to-civil (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Python's ``_text`` of a value (masks and row filters): None for what the kernel does not
/// render (the spec never asks for those kinds).
fn text(val: Val<'_>, kind: Kind, out: &mut String) -> bool {
    match (val, kind) {
        (Val::Str(s), _) => out.push_str(s),
        (Val::Int(v), Kind::Date) => iso_date(v, out),
        (Val::Int(v), _) => {
            let _ = write!(out, "{v}");
        }
        (Val::Bool(b), _) => out.push_str(if b { "true" } else { "false" }),
        (Val::Dec(v), Kind::Decimal { scale, .. }) => return decimal_text(v, scale, out),
        _ => return false,
    }
    true
}

/// ``str()`` of the ``Decimal`` fastavro reads (the unscaled value times 10 ** -scale), where
/// that is plain notation; ``false`` for the scientific one (adjusted exponent below -6).
fn decimal_text(v: i128, scale: u32, out: &mut String) -> bool {
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    if digits.len() as i64 - 1 - (scale as i64) < -6 {
        return false;
    }
    if v < 0 {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
        return true;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, frac) = padded.split_at(padded.len() - scale);
    out.push_str(whole);
    out.push('.');
    out.push_str(frac);
    true
}

/// Python's ``key_text`` (the business key): like ``_text`` but ``str()`` of a bool and of None.
fn key_text(val: Val<'_>, kind: Kind, out: &mut String) -> bool {
    match val {
        Val::Null => out.push_str("None"),
        Val::Bool(b) => out.push_str(if b { "True" } else { "False" }),
        _ => return text(val, kind, out),
    }
    true
}

/// ``json.dumps(text, ensure_ascii=False)``.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// -- checks ----------------------------------------------------------------------------------

enum Check {
    Required,
    CitizenId,
    CreditCode,
    Pattern(Arc<Regex>),
    /// An integer (or a decimal's unscaled value) within inclusive bounds.
    Range(i128, i128),
    /// A float within bounds; a value equal to a bound is left to Python (Decimal compares the
    /// shortest text of the float with the exact bound).
    FloatRange(Option<f64>, Option<f64>),
    /// The rule does not apply to the field's type: any value breaks it.
    Absent,
}

impl Check {
    fn passes(&self, val: Val<'_>, today: i64) -> bool {
        match (self, val) {
            (Check::Required, Val::Null) => false,
            (Check::Required, Val::Str(s)) => !s.is_empty(),
            (Check::Required, _) => true,
            (_, Val::Null) => true,
            (Check::CitizenId, Val::Str(s)) => citizen_id_ok(s.as_bytes(), today),
            (Check::CreditCode, Val::Str(s)) => credit_code_ok(s.as_bytes()),
            (Check::Pattern(re), Val::Str(s)) => re.is_match(s),
            (Check::Range(lo, hi), Val::Int(v)) => (*lo..=*hi).contains(&i128::from(v)),
            (Check::Range(lo, hi), Val::Dec(v)) => (*lo..=*hi).contains(&v),
            (Check::FloatRange(lo, hi), Val::F64(raw)) => {
                float_in(f64::from_le_bytes(raw), *lo, *hi)
            }
            (Check::FloatRange(lo, hi), Val::F32(raw)) => {
                float_in(f64::from(f32::from_le_bytes(raw)), *lo, *hi)
            }
            _ => false,
        }
    }
}

fn float_in(v: f64, lo: Option<f64>, hi: Option<f64>) -> bool {
    if v.is_nan() {
        return false;
    }
    lo.is_none_or(|lo| v > lo) && hi.is_none_or(|hi| v < hi)
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";
const PROVINCES: [u32; 34] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];
const PROVINCE_MACAO: u32 = 83;
/// `date(1800, 1, 1)` as days since 1970.
const EARLIEST_BIRTH: i64 = -62_091;

/// GB 11643 as `citizen_id_problem` checks it (ASCII only; anything else is left to Python).
fn citizen_id_ok(b: &[u8], today: i64) -> bool {
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let check = b[17].to_ascii_uppercase();
    if !(check.is_ascii_digit() || check == b'X') {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let province = num(0..2);
    if !(PROVINCES.contains(&province) || province == PROVINCE_MACAO) {
        return false;
    }
    let (y, m, d) = (num(6..10), num(10..12), num(12..14));
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > month_days(y, m) {
        return false;
    }
    let birth = days_from_civil(i64::from(y), i64::from(m), i64::from(d));
    if birth < EARLIEST_BIRTH || birth > today {
        return false;
    }
    let total: u32 = b[..17]
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    ID_CHECK[(total % 11) as usize] == check
}

fn month_days(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

const CC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn credit_code_ok(b: &[u8]) -> bool {
    if b.len() != 18 || !b[2..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut total = 0u32;
    for (i, c) in b.iter().enumerate() {
        let Some(v) = CC_ALPHABET.iter().position(|a| a == c) else {
            return false;
        };
        if i < 17 {
            total += v as u32 * CC_WEIGHTS[i];
        }
    }
    CC_ALPHABET[((31 - total % 31) % 31) as usize] == b[17]
}

// -- grants ----------------------------------------------------------------------------------

enum Mask {
    Copy,
    Keep(usize, usize),
    Hash,
    Redact,
    Text,
}

struct OutField {
    src: Option<usize>,
    mask: Mask,
}

enum Filter {
    Prefix(Option<usize>, String),
    In(Option<usize>, Vec<String>),
}

enum Part {
    Const(Vec<u8>),
    Op([u8; 4]),
    After,
    Ts,
    EventId,
    Position,
}

struct Grant {
    out: Vec<OutField>,
    filters: Vec<Filter>,
    hashed_key: bool,
    mac: HmacSha256,
    /// Keyed with the grant's ids key: its event ids and positions (`delivery_token`).
    ids: HmacSha256,
    template: Vec<Part>,
    /// For the headers of tombstones (`exchange.grant`).
    grant_id: Vec<u8>,
    /// The delivery topic's partition count (0: leave the choice to librdkafka).
    partitions: u32,
    /// The grant's slot in the per-key state (`KeyState.slot` of its routing key: a grant's
    /// generation holds keys of its own).
    slot: u64,
}

/// librdkafka's ``consistent_random``: CRC-32 of a non-empty key modulo the partition count;
/// -1 (librdkafka picks one at random) for an empty key or an unknown count.
fn partition_of(key: &[u8], partitions: u32) -> i32 {
    if key.is_empty() || partitions == 0 {
        return -1;
    }
    (crc32fast::hash(key) % partitions) as i32
}

/// A source event id or position as one grant delivers it, as
/// `exchange.routing.transform.delivery_token` makes it: the hex of the first 16 bytes of
/// HMAC-SHA256(ids key, tag + value), `tag` `b"e\0"` (event) or `b"p\0"` (position).
fn hex_token(ids: &HmacSha256, tag: &[u8; 2], value: &[u8]) -> [u8; 32] {
    let mut m = ids.clone();
    m.update(tag);
    m.update(value);
    let digest = m.finalize().into_bytes();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in digest.iter().take(16).enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0F)];
    }
    out
}

/// The HMAC's hex digest (ASCII bytes).
fn hex_hmac(mac: &HmacSha256, data: &[u8]) -> [u8; 64] {
    let mut m = mac.clone();
    m.update(data);
    let digest = m.finalize().into_bytes();
    // A table, not `write!("{:02x}")`: formatting cost more than the HMAC itself.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0F)];
    }
    out
}

// -- readers ---------------------------------------------------------------------------------

enum Env {
    Op(Vec<i8>),
    After(u8),
    Source(usize, usize),
    Ts,
    EventId,
}

/// Everything needed to route records written with one schema id.
struct Reader {
    envelope: Vec<Env>,
    fields: Vec<(Kind, u8)>,
    checks: Vec<(Option<usize>, Check)>,
    key: Vec<Option<usize>>,
    composite_key: bool,
    provider: String,
    grants: Vec<Grant>,
    /// The grants' slots in the per-key state (holdings of any other grant are dropped).
    slots: Vec<u64>,
}

struct Change<'a> {
    op: u8,
    after: Option<Vec<Val<'a>>>,
    department: &'a str,
    ts: i64,
    event_id: &'a str,
}

impl Reader {
    fn decode<'a>(&self, data: &'a [u8]) -> Option<Change<'a>> {
        let mut c = Cursor { buf: data, pos: 5 };
        let mut change = Change {
            op: 255,
            after: None,
            department: "",
            ts: 0,
            event_id: "",
        };
        for part in &self.envelope {
            match part {
                Env::Op(map) => {
                    let i = usize::try_from(c.long()?).ok()?;
                    change.op = u8::try_from(*map.get(i)?).ok()?;
                }
                Env::After(null_index) => {
                    let branch = c.long()?;
                    if branch == i64::from(*null_index) {
                        change.after = None;
                    } else if branch == i64::from(1 - null_index) {
                        change.after = Some(self.after(&mut c)?);
                    } else {
                        return None;
                    }
                }
                Env::Source(fields, department) => {
                    for i in 0..*fields {
                        let s = c.string()?;
                        if i == *department {
                            change.department = s;
                        }
                    }
                }
                Env::Ts => {
                    change.ts = c.long()?;
                    if !(MS_MIN..=MS_MAX).contains(&change.ts) {
                        return None;
                    }
                }
                Env::EventId => change.event_id = c.string()?,
            }
        }
        // Trailing bytes: the Python path decides about those.
        (c.pos == data.len()).then_some(change)
    }

    fn after<'a>(&self, c: &mut Cursor<'a>) -> Option<Vec<Val<'a>>> {
        let mut out = Vec::with_capacity(self.fields.len());
        for (kind, nullable) in &self.fields {
            let val = match nullable {
                0 => c.value(*kind)?,
                _ => {
                    // 1: ["null", T]; 2: [T, "null"].
                    let null_branch = i64::from(*nullable - 1);
                    match c.long()? {
                        b if b == null_branch => Val::Null,
                        b if b == 1 - null_branch => c.value(*kind)?,
                        _ => return None,
                    }
                }
            };
            out.push(val);
        }
        Some(out)
    }

    /// Whether the change passes every check `_check_change` makes.
    fn valid(&self, change: &Change<'_>, key: Option<&[u8]>, today: i64, buf: &mut String) -> bool {
        if change.department != self.provider {
            return false;
        }
        if change.op == OP_DELETE {
            return change.after.is_none() && key.is_some_and(|k| !k.is_empty());
        }
        let Some(after) = &change.after else {
            return false;
        };
        for (field, check) in &self.checks {
            let val = field.map_or(Val::Null, |i| after[i]);
            if !check.passes(val, today) {
                return false;
            }
        }
        buf.clear();
        if !self.business_key(after, buf) {
            return false;
        }
        key == Some(buf.as_bytes())
    }

    fn business_key(&self, after: &[Val<'_>], out: &mut String) -> bool {
        let field = |i: &Option<usize>| match i {
            Some(i) => (after[*i], self.fields[*i].0),
            None => (Val::Null, Kind::Str),
        };
        if !self.composite_key {
            let (val, kind) = field(&self.key[0]);
            return key_text(val, kind, out);
        }
        out.push('[');
        let mut part = String::new();
        for (n, i) in self.key.iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            let (val, kind) = field(i);
            part.clear();
            if !key_text(val, kind, &mut part) {
                return false;
            }
            json_string(&part, out);
        }
        out.push(']');
        true
    }

    fn accepts(&self, grant: &Grant, after: &[Val<'_>], buf: &mut String) -> bool {
        grant.filters.iter().all(|f| match f {
            Filter::Prefix(src, prefix) => {
                matches!(src.map(|i| after[i]), Some(Val::Str(s)) if s.starts_with(prefix.as_str()))
            }
            Filter::In(src, wanted) => match src.map(|i| (after[i], self.fields[i].0)) {
                None | Some((Val::Null, _)) => false,
                Some((val, kind)) => {
                    buf.clear();
                    text(val, kind, buf) && wanted.iter().any(|w| w == buf)
                }
            },
        })
    }

    /// The delivery's ``after`` record (without the union branch).
    fn project(&self, grant: &Grant, after: &[Val<'_>], out: &mut Vec<u8>, buf: &mut String) {
        for field in &grant.out {
            let Some(i) = field.src else {
                out.push(0);
                continue;
            };
            let val = after[i];
            if matches!(val, Val::Null) || matches!(field.mask, Mask::Redact) {
                out.push(0);
                continue;
            }
            out.push(2);
            if matches!(field.mask, Mask::Copy) {
                put_value(out, val);
                continue;
            }
            buf.clear();
            text(val, self.fields[i].0, buf);
            match field.mask {
                Mask::Hash => put_bytes(out, &hex_hmac(&grant.mac, buf.as_bytes())),
                Mask::Keep(first, last) => put_bytes(out, keep(buf, first, last).as_bytes()),
                _ => put_bytes(out, buf.as_bytes()),
            }
        }
    }
}

/// ``mask_value`` for ``keep``: counts characters, as Python does.
fn keep(text: &str, first: usize, last: usize) -> String {
    let n = text.chars().count();
    let kept = first + last;
    if n <= kept {
        return "*".repeat(n);
    }
    let mut out: String = text.chars().take(first).collect();
    out.push_str(&"*".repeat(n - kept));
    out.extend(text.chars().skip(n - last));
    out
}

// -- Python classes --------------------------------------------------------------------------

type CheckSpec = (
    i64,
    String,
    Option<String>,
    Option<i128>,
    Option<i128>,
    Option<f64>,
    Option<f64>,
);
/// What `exchange/routing/kernel.py` `compile_reader` makes: envelope, fields, checks, key,
/// provider, grants.
type ReaderSpec = (
    Vec<(String, Vec<i8>, usize, usize)>,
    Vec<(String, u8, u32, u32)>,
    Vec<CheckSpec>,
    Vec<i64>,
    String,
    Vec<GrantSpec>,
);
type GrantSpec = (
    Vec<(i64, String, usize, usize)>,
    Vec<(i64, String, Vec<String>)>,
    bool,
    Vec<u8>,
    Vec<(String, Vec<u8>)>,
    String,
    u32,
    u64,
);

fn index(i: i64) -> Option<usize> {
    usize::try_from(i).ok()
}

fn kind(name: &str, precision: u32, scale: u32) -> PyResult<Kind> {
    Ok(match name {
        "string" => Kind::Str,
        "int" => Kind::Int,
        "long" => Kind::Long,
        "boolean" => Kind::Bool,
        "float" => Kind::Float,
        "double" => Kind::Double,
        "date" => Kind::Date,
        "decimal" => Kind::Decimal { precision, scale },
        other => return Err(PyValueError::new_err(format!("no field kind {other:?}"))),
    })
}

/// Compiled patterns by text, shared by every reader that checks the same one: a compiled
/// pattern takes tens of kB, and a catalog repeats a few (citizen ID, phone, region codes)
/// across its entries and their schema versions (1,000 entries held 100 MB of copies).
fn shared_regex(pattern: &str) -> PyResult<Arc<Regex>> {
    static SHARED: OnceLock<Mutex<HashMap<String, Arc<Regex>>>> = OnceLock::new();
    let mut shared = SHARED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(re) = shared.get(pattern) {
        return Ok(Arc::clone(re));
    }
    let re = Regex::new(&format!(r"\A(?:{pattern})\z"))
        .map_err(|e| PyValueError::new_err(format!("pattern {pattern:?}: {e}")))?;
    let re = Arc::new(re);
    shared.insert(pattern.to_owned(), Arc::clone(&re));
    Ok(re)
}

fn check(spec: CheckSpec) -> PyResult<(Option<usize>, Check)> {
    let (field, name, pattern, lo, hi, flo, fhi) = spec;
    let check = match name.as_str() {
        "required" => Check::Required,
        "citizen_id" => Check::CitizenId,
        "credit_code" => Check::CreditCode,
        "pattern" => Check::Pattern(shared_regex(&pattern.unwrap_or_default())?),
        "range" => Check::Range(lo.unwrap_or(i128::MIN), hi.unwrap_or(i128::MAX)),
        "float_range" => Check::FloatRange(flo, fhi),
        "absent" => Check::Absent,
        other => return Err(PyValueError::new_err(format!("no check {other:?}"))),
    };
    Ok((index(field), check))
}

fn grant(spec: GrantSpec) -> PyResult<Grant> {
    let (out, filters, hashed_key, salt, template, grant_id, partitions, slot) = spec;
    let out = out
        .into_iter()
        .map(|(src, mask, first, last)| {
            let mask = match mask.as_str() {
                "copy" => Mask::Copy,
                "keep" => Mask::Keep(first, last),
                "hash" => Mask::Hash,
                "redact" => Mask::Redact,
                "none" => Mask::Text,
                other => return Err(PyValueError::new_err(format!("no mask {other:?}"))),
            };
            Ok(OutField {
                src: index(src),
                mask,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let filters = filters
        .into_iter()
        .map(|(src, op, mut values)| match op.as_str() {
            "prefix" if values.len() == 1 => Ok(Filter::Prefix(index(src), values.remove(0))),
            "in" => Ok(Filter::In(index(src), values)),
            other => Err(PyValueError::new_err(format!("no filter {other:?}"))),
        })
        .collect::<PyResult<Vec<_>>>()?;
    let template = template
        .into_iter()
        .map(|(part, data)| {
            Ok(match part.as_str() {
                "const" => Part::Const(data),
                "op" => Part::Op(
                    data.try_into()
                        .map_err(|_| PyValueError::new_err("op map"))?,
                ),
                "after" => Part::After,
                "ts" => Part::Ts,
                "event_id" => Part::EventId,
                "position" => Part::Position,
                other => return Err(PyValueError::new_err(format!("no part {other:?}"))),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let mac =
        HmacSha256::new_from_slice(&salt).map_err(|e| PyValueError::new_err(e.to_string()))?;
    // `exchange.routing.transform.ids_key`: HMAC(salt, "exchange delivery ids").
    let mut derive = mac.clone();
    derive.update(b"exchange delivery ids");
    let ids = HmacSha256::new_from_slice(&derive.finalize().into_bytes())
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(Grant {
        out,
        filters,
        hashed_key,
        mac,
        ids,
        template,
        slot,
        grant_id: grant_id.into_bytes(),
        partitions,
    })
}

/// What one grant got from a batch: deliveries, and per source partition a receipt.
#[derive(Default)]
struct GrantOut {
    deliveries: Deliveries,
    receipts: Vec<ReceiptPart>,
    filtered: u64,
}

struct ReceiptPart {
    partition: i32,
    first: i64,
    last: i64,
    count: u64,
    delivered: u64,
    /// The grant's deliveries from this partition (indices into its buffer): the digest's feed.
    items: Vec<u32>,
    ts: Vec<i64>,
}

/// The receipt part of ``partition``, made on its first delivery.
fn receipt_in(receipts: &mut Vec<ReceiptPart>, partition: i32, offset: i64) -> &mut ReceiptPart {
    let at = match receipts.iter().position(|r| r.partition == partition) {
        Some(at) => at,
        None => {
            receipts.push(ReceiptPart {
                partition,
                first: offset,
                last: offset,
                count: 0,
                delivered: 0,
                // Grown as needed: a batch spread over thousands of partitions and grants has
                // thousands of parts of a delivery or two each.
                items: Vec::new(),
                ts: Vec::new(),
            });
            receipts.len() - 1
        }
    };
    &mut receipts[at]
}

/// A batch's record as read with the GIL: borrowed bytes, read without it.
struct Input<'a> {
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// What routing a batch made, before any Python object is.
struct Computed {
    fallback: Vec<usize>,
    offsets: Vec<(i32, i64)>,
    grants: Vec<GrantOut>,
    /// Per source partition with a state: the batch's changes to it and the epoch they began in.
    states: Vec<(i32, u64, state::Changes)>,
    /// The changes as changelog records (key digest -> row; a tombstone for a key deleted), to
    /// the source partition's number.
    changelog: Deliveries,
}

type Readers = HashMap<u32, Option<Arc<Reader>>>;

/// The compiled routes of one catalog entry and its grants, by writer schema id.
///
/// Frozen (no borrow tracking) and safe to share between threads: `route` works on the bytes
/// without the GIL, so the worker runs it in a thread of its own while the event loop stages
/// the previous batch; the readers are behind a mutex taken only for moments, never while
/// waiting for the GIL.
#[pyclass(module = "exchange._kernel", frozen)]
struct EntryKernel {
    grants: usize,
    /// Records whose key and value together are longer go to the core, which checks each
    /// delivery's exact size against the router's limit (a delivery can outgrow its record
    /// by less than the margin the caller subtracted).
    max_input: usize,
    readers: Mutex<Readers>,
}

impl EntryKernel {
    fn readers(&self) -> std::sync::MutexGuard<'_, Readers> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Phase two: everything but Python objects, without the GIL.
    ///
    /// With a state for a record's partition, each grant gets what the change means for it
    /// (`state::transition`: a create on entering its scope, a delete on leaving it or on a
    /// delete it held, nothing when what it sees did not change); without, every change that
    /// passes its filter, as the source op says.
    #[allow(clippy::too_many_arguments)] // the route's inputs, passed through as they come
    fn compute(
        &self,
        readers: &Readers,
        topic: &str,
        inputs: &[Input<'_>],
        starts: &[HashMap<i32, i64>],
        today: i64,
        states: &[(i32, &KeyState)],
        settled: &HashMap<i32, i64>,
    ) -> Computed {
        let n = inputs.len();
        let mut out = Computed {
            fallback: Vec::new(),
            offsets: Vec::new(),
            grants: (0..self.grants)
                .map(|_| GrantOut {
                    deliveries: Deliveries::with_capacity(n, 0),
                    ..GrantOut::default()
                })
                .collect(),
            states: Vec::new(),
            changelog: Deliveries::with_capacity(if states.is_empty() { 0 } else { n }, 0),
        };
        let mut batches: Vec<(i32, state::Batch<'_>)> =
            states.iter().map(|(p, s)| (*p, s.batch())).collect();
        let mut buf = String::new();
        let mut position = String::new();
        let mut projected: Vec<u8> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let (partition, offset) = (input.partition, input.offset);
            match out.offsets.iter_mut().find(|(p, _)| *p == partition) {
                Some(entry) => entry.1 = entry.1.max(offset + 1),
                None => out.offsets.push((partition, offset + 1)),
            }
            let Some(data) = input.value else {
                if input.key.is_none_or(<[u8]>::is_empty) {
                    out.fallback.push(i); // no key either: the core sets it aside
                }
                continue; // a source tombstone: its `d` record was delivered
            };
            if data.len() + input.key.map_or(0, <[u8]>::len) > self.max_input {
                out.fallback.push(i); // near the size limit: the core checks each delivery
                continue;
            }
            let reader = match schema_id(data).and_then(|id| readers.get(&id)) {
                Some(Some(reader)) => reader,
                _ => {
                    out.fallback.push(i);
                    continue;
                }
            };
            let Some(change) = reader.decode(data) else {
                out.fallback.push(i);
                continue;
            };
            if !reader.valid(&change, input.key, today, &mut buf) {
                out.fallback.push(i);
                continue;
            }
            let version = state::short_hash(change.event_id.as_bytes());
            // The key's state: (which batch, its digest, its row as it is now).
            let found = batches
                .iter()
                .position(|(p, _)| *p == partition)
                .and_then(|b| input.key.map(|k| (b, state::key_digest(k))));
            if let (Some((b, digest)), Some(below)) = (&found, settled.get(&partition)) {
                if offset < *below && batches[*b].1.committed_version(digest) != Some(version) {
                    continue; // a backfill gives a key's current version only
                }
            }
            position.clear();
            let _ = write!(position, "{topic}/{partition}/{offset}");
            let mut keyed = found.map(|(b, digest)| {
                let row: state::Row = batches[b]
                    .1
                    .row(&digest)
                    .unwrap_or_else(|| state::with_holding(&[], version, 0, None));
                (b, digest, row)
            });
            for (g, grant) in reader.grants.iter().enumerate() {
                match starts[g].get(&partition) {
                    Some(start) if offset >= *start => {}
                    _ => continue,
                }
                let go = &mut out.grants[g];
                let passes = change
                    .after
                    .as_ref()
                    .is_some_and(|after| reader.accepts(grant, after, &mut buf));
                let op = match &mut keyed {
                    None if change.after.is_some() && !passes => {
                        go.filtered += 1;
                        continue;
                    }
                    None => change.op,
                    Some((_, _, row)) => {
                        let seen = match &change.after {
                            None => None,
                            Some(_) if !passes => Some((false, 0)),
                            Some(after) => {
                                projected.clear();
                                reader.project(grant, after, &mut projected, &mut buf);
                                Some((true, state::record_hash(&projected)))
                            }
                        };
                        let (action, now) = state::transition(state::held(row, grant.slot), seen);
                        *row = state::with_holding(row, version, grant.slot, now);
                        match action {
                            state::Action::Skip => {
                                if change.after.is_some() && !passes {
                                    go.filtered += 1;
                                }
                                continue;
                            }
                            state::Action::Create => OP_CREATE,
                            state::Action::Update => OP_UPDATE,
                            state::Action::Delete => OP_DELETE,
                        }
                    }
                };
                let hashed: Option<[u8; 64]> = match input.key {
                    Some(k) if grant.hashed_key => Some(hex_hmac(&grant.mac, k)),
                    _ => None,
                };
                let key: Option<&[u8]> = match (&hashed, input.key) {
                    (Some(h), _) => Some(h),
                    (None, k) => k,
                };
                let key_slice = key.unwrap_or(&[]);
                let GrantOut {
                    deliveries,
                    receipts,
                    ..
                } = &mut *go;
                // Per grant: one change's copies under two grants cannot be joined by these.
                let event_token = hex_token(&grant.ids, b"e\0", change.event_id.as_bytes());
                let position_token = hex_token(&grant.ids, b"p\0", position.as_bytes());
                let buffer = deliveries.buffer();
                let start = buffer.len();
                for part in &grant.template {
                    match part {
                        Part::Const(bytes) => buffer.extend_from_slice(bytes),
                        Part::Op(map) => buffer.push(map[op as usize]),
                        Part::After => match &change.after {
                            Some(_) if op == OP_DELETE => buffer.push(0),
                            None => buffer.push(0),
                            Some(after) => {
                                buffer.push(2);
                                if keyed.is_some() {
                                    buffer.extend_from_slice(&projected);
                                } else {
                                    reader.project(grant, after, buffer, &mut buf);
                                }
                            }
                        },
                        Part::Ts => put_long(buffer, change.ts),
                        Part::EventId => put_bytes(buffer, &event_token),
                        Part::Position => {
                            buffer.push(2);
                            put_bytes(buffer, &position_token);
                        }
                    }
                }
                let target = partition_of(key_slice, grant.partitions);
                let tombstone = op == OP_DELETE && input.key.is_some();
                // The receipt's counts and digest feed, as `Receipt.add` would make them.
                let receipt = receipt_in(receipts, partition, offset);
                receipt.last = offset;
                receipt.count += 1 + u64::from(tombstone);
                receipt.delivered += 1;
                receipt.ts.push(change.ts);
                let item = deliveries.count() as u32;
                receipt.items.push(item);
                if tombstone {
                    receipt.items.push(item + 1);
                }
                deliveries.push_tail(key, start, target);
                if tombstone {
                    // Delivery topics are compacted: the tombstone lets compaction drop the key.
                    let headers = tombstone_headers(&grant.grant_id, &event_token, &position_token);
                    deliveries.push(key, None, target, Some(headers));
                }
            }
            if let Some((b, digest, mut row)) = keyed {
                let batch = &mut batches[b].1;
                if change.op == OP_DELETE {
                    batch.set(digest, None);
                    out.changelog.push(Some(&digest), None, partition, None);
                } else {
                    row[..8].copy_from_slice(&version.to_le_bytes());
                    if let Some(less) = state::pruned(&row, &reader.slots) {
                        row = less;
                    }
                    out.changelog
                        .push(Some(&digest), Some(&row), partition, None);
                    batch.set(digest, Some(row));
                }
            }
        }
        out.states = batches
            .into_iter()
            .map(|(p, batch)| {
                let (epoch, changes) = batch.release();
                (p, epoch, changes)
            })
            .collect();
        out
    }
}

fn schema_id(data: &[u8]) -> Option<u32> {
    (data.len() >= 5 && data[0] == 0)
        .then(|| u32::from_be_bytes([data[1], data[2], data[3], data[4]]))
}

#[pymethods]
impl EntryKernel {
    #[new]
    #[pyo3(signature = (grants, max_input=usize::MAX))]
    fn new(grants: usize, max_input: usize) -> Self {
        EntryKernel {
            grants,
            max_input,
            readers: Mutex::new(HashMap::new()),
        }
    }

    /// Records written with ``schema_id`` are routed by ``spec``; with ``None`` they all go
    /// back to Python (a schema the kernel cannot read, or the registry does not know).
    #[pyo3(signature = (schema_id, spec=None))]
    fn add_reader(&self, schema_id: u32, spec: Option<ReaderSpec>) -> PyResult<()> {
        let Some((envelope, fields, checks, key, provider, grants)) = spec else {
            self.readers().insert(schema_id, None);
            return Ok(());
        };
        if grants.len() != self.grants {
            return Err(PyValueError::new_err("one grant spec per grant"));
        }
        let envelope = envelope
            .into_iter()
            .map(|(name, map, a, b)| {
                Ok(match name.as_str() {
                    "op" => Env::Op(map),
                    "after" => {
                        Env::After(u8::try_from(a).map_err(|_| PyValueError::new_err("after"))?)
                    }
                    "source" => Env::Source(a, b),
                    "ts_ms" => Env::Ts,
                    "event_id" => Env::EventId,
                    other => {
                        return Err(PyValueError::new_err(format!("no envelope part {other:?}")))
                    }
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let fields = fields
            .into_iter()
            .map(|(name, nullable, precision, scale)| {
                Ok((kind(&name, precision, scale)?, nullable))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let reader = Reader {
            envelope,
            fields,
            checks: checks.into_iter().map(check).collect::<PyResult<_>>()?,
            composite_key: key.len() > 1,
            key: key.into_iter().map(index).collect(),
            provider,
            grants: grants
                .into_iter()
                .map(grant)
                .collect::<PyResult<Vec<_>>>()?,
            slots: Vec::new(),
        };
        let reader = Reader {
            slots: reader.grants.iter().map(|g| g.slot).collect(),
            ..reader
        };
        self.readers().insert(schema_id, Some(Arc::new(reader)));
        Ok(())
    }

    /// The schema ids of ``messages`` the kernel has no reader for yet (the I/O edge fetches
    /// them and calls :meth:`add_reader` before routing).
    fn missing(&self, py: Python<'_>, messages: &Bound<'_, PyList>) -> PyResult<Vec<u32>> {
        let readers = self.readers().clone();
        let mut out: Vec<u32> = Vec::new();
        for msg in messages.iter() {
            let value = msg.call_method0(intern!(py, "value"))?;
            let Ok(value) = value.downcast::<PyBytes>() else {
                continue;
            };
            if let Some(id) = schema_id(value.as_bytes()) {
                if !readers.contains_key(&id) && !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Route a batch of one entry's records (confluent-kafka ``Message`` objects).
    ///
    /// ``starts[g]``: per source partition, the first offset the live stream (or a backfill)
    /// delivers to grant ``g``; a partition missing from it gets nothing for that grant.
    /// ``today``: ``date.today().toordinal()``, for the birth dates of citizen IDs.
    ///
    /// ``states``: per source partition, its per-key state (`src/state.rs`); a partition
    /// without one is routed without (every change that passes a grant's filter, as is).
    ///
    /// ``settled`` (a backfill's): per source partition with a state, the offset its committed
    /// rows have routed up to; a record below it is passed over unless it is its key's
    /// committed version, so a backfill gives each live key once, as it is now, and no deleted
    /// or superseded version.
    ///
    /// Returns ``(missing, fallback, grants, offsets, changes, changelog)``: schema ids to
    /// resolve first (then nothing else is filled in; call again); indices of the records the
    /// Python core must route; per grant ``(deliveries, receipts, filtered)``; per partition
    /// the next offset; per partition with a state ``(partition, StateChanges)``, not pending
    /// until ended; the changelog records of those changes (``Deliveries``, to the source
    /// partition's number). The routing itself runs without the GIL.
    #[pyo3(signature = (topic, messages, starts, today, states=None, settled=None))]
    #[allow(clippy::too_many_arguments)]
    fn route<'py>(
        &self,
        py: Python<'py>,
        topic: &str,
        messages: &Bound<'py, PyList>,
        starts: Vec<HashMap<i32, i64>>,
        today: i64,
        states: Option<HashMap<i32, Py<KeyState>>>,
        settled: Option<HashMap<i32, i64>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        if starts.len() != self.grants {
            return Err(PyValueError::new_err("one start map per grant"));
        }
        let settled = settled.unwrap_or_default();
        // Phase one, with the GIL: read the messages.
        let (n_partition, n_offset, n_key, n_value) = (
            intern!(py, "partition"),
            intern!(py, "offset"),
            intern!(py, "key"),
            intern!(py, "value"),
        );
        let n = messages.len();
        let mut keys: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(n);
        let mut values: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(n);
        let mut places: Vec<(i32, i64)> = Vec::with_capacity(n);
        for msg in messages.iter() {
            places.push((
                msg.call_method0(n_partition)?.extract()?,
                msg.call_method0(n_offset)?.extract()?,
            ));
            let key = msg.call_method0(n_key)?;
            keys.push(if key.is_none() {
                None
            } else {
                Some(key.downcast_into::<PyBytes>()?)
            });
            let value = msg.call_method0(n_value)?;
            values.push(if value.is_none() {
                None
            } else {
                Some(value.downcast_into::<PyBytes>()?)
            });
        }
        let readers = self.readers().clone();
        let mut missing: Vec<u32> = Vec::new();
        for value in values.iter().flatten() {
            if let Some(id) = schema_id(value.as_bytes()) {
                if !readers.contains_key(&id) && !missing.contains(&id) {
                    missing.push(id);
                }
            }
        }
        if !missing.is_empty() {
            return PyTuple::new(
                py,
                [
                    PyList::new(py, missing)?.into_any(),
                    PyList::empty(py).into_any(),
                    PyList::empty(py).into_any(),
                    PyList::empty(py).into_any(),
                    PyList::empty(py).into_any(),
                    py.None().into_bound(py),
                ],
            );
        }
        // The bytes objects stay referenced by `keys` and `values` (and are immutable), so
        // their buffers may be read without the GIL.
        let inputs: Vec<Input<'_>> = places
            .iter()
            .zip(keys.iter().zip(values.iter()))
            .map(|(&(partition, offset), (key, value))| Input {
                partition,
                offset,
                key: key.as_ref().map(|k| k.as_bytes()),
                value: value.as_ref().map(|v| v.as_bytes()),
            })
            .collect();
        // Phase two, without it.
        let states: Vec<(i32, Py<KeyState>)> = states.unwrap_or_default().into_iter().collect();
        let computed = py.allow_threads(|| {
            let borrowed: Vec<(i32, &KeyState)> =
                states.iter().map(|(p, s)| (*p, s.get())).collect();
            self.compute(
                &readers,
                topic,
                &inputs,
                &starts,
                today - ORDINAL_1970,
                &borrowed,
                &settled,
            )
        });
        drop(inputs);
        // Phase three, with it again: the Python objects (a few per grant and partition).
        let grants = PyList::empty(py);
        for out in computed.grants {
            let deliveries = Py::new(py, out.deliveries)?;
            let receipts = PyList::empty(py);
            for r in out.receipts {
                receipts.append((
                    r.partition,
                    r.first,
                    r.last,
                    r.count,
                    r.delivered,
                    Feed::new(deliveries.clone_ref(py), r.items),
                    PyList::new(py, r.ts)?,
                ))?;
            }
            grants.append((deliveries, receipts, out.filtered))?;
        }
        let changes = PyList::empty(py);
        for (partition, epoch, batch) in computed.states {
            let state = states
                .iter()
                .find(|(p, _)| *p == partition)
                .map(|(_, s)| s.clone_ref(py))
                .expect("a state per batch");
            let made = StateChanges {
                state,
                epoch,
                changes: Some(batch),
            };
            changes.append((partition, Py::new(py, made)?))?;
        }
        let changelog = if states.is_empty() {
            py.None().into_bound(py)
        } else {
            Py::new(py, computed.changelog)?.into_bound(py).into_any()
        };
        PyTuple::new(
            py,
            [
                PyList::empty(py).into_any(),
                PyList::new(py, computed.fallback)?.into_any(),
                grants.into_any(),
                PyList::new(py, computed.offsets)?.into_any(),
                changes.into_any(),
                changelog,
            ],
        )
    }
}

/// Topic, partition, first and last offset, messages.
type PartitionRun<'py> = (Bound<'py, PyAny>, i32, i64, i64, Bound<'py, PyList>);

/// A batch's messages by source partition, each in the order read:
/// ``[(topic, partition, first offset, last offset, messages)]``.
#[pyfunction]
fn partition_runs<'py>(
    py: Python<'py>,
    messages: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let (n_topic, n_partition, n_offset) = (
        intern!(py, "topic"),
        intern!(py, "partition"),
        intern!(py, "offset"),
    );
    // Runs are few and records of one partition come together: the last run is checked first,
    // then the others; no allocation per record.
    let mut names: Vec<String> = Vec::new();
    let mut runs: Vec<PartitionRun<'py>> = Vec::new();
    let mut last = usize::MAX;
    for msg in messages.iter() {
        let topic = msg.call_method0(n_topic)?.downcast_into::<PyString>()?;
        let partition: i32 = msg.call_method0(n_partition)?.extract()?;
        let offset: i64 = msg.call_method0(n_offset)?.extract()?;
        let name = topic.to_str()?;
        let same = |i: usize| runs[i].1 == partition && names[i] == name;
        let i = if last != usize::MAX && same(last) {
            last
        } else if let Some(i) = (0..runs.len()).find(|&i| same(i)) {
            i
        } else {
            names.push(name.to_owned());
            runs.push((
                topic.into_any(),
                partition,
                offset,
                offset,
                PyList::empty(py),
            ));
            runs.len() - 1
        };
        last = i;
        let run = &mut runs[i];
        run.2 = run.2.min(offset);
        run.3 = run.3.max(offset);
        run.4.append(msg)?;
    }
    let out = PyList::empty(py);
    for run in runs {
        out.append(run)?;
    }
    Ok(out)
}

#[pymodule]
fn _kernel(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EntryKernel>()?;
    m.add_class::<Deliveries>()?;
    m.add_class::<NativeProducer>()?;
    m.add_class::<Feed>()?;
    m.add_class::<ReceiptDigest>()?;
    m.add_class::<KeyState>()?;
    m.add_class::<StateBatch>()?;
    m.add_class::<StateChanges>()?;
    m.add(
        "ProduceError",
        m.py().get_type::<deliveries::ProduceError>(),
    )?;
    m.add_function(wrap_pyfunction!(partition_runs, m)?)?;
    Ok(())
}
