//! Per-key state of one source partition: which grants hold each key, and what they hold.
//!
//! Exact per-grant semantics need, for each key, who holds it now: a record entering a grant's
//! scope is a create for it, one leaving it a delete, a delete reaches only the grants that held
//! the key, and an update that changes nothing a grant sees is not delivered to it. The state
//! keeps exactly that and no more, so it fits in memory for a city-sized entry:
//!
//! - the key's SHA-256, first 16 bytes (not the key: a citizen ID is not kept twice);
//! - the version: the first 8 bytes of the SHA-256 of the event id of the last accepted change
//!   (a change repeated by a crashed connector carries the same event id, and a backfill picks
//!   a key's current record out of the source log by it);
//! - per grant holding the key, the grant's slot (a stable 64-bit number of the grant) and a
//!   64-bit hash of what the grant received last (its projected, masked record).
//!
//! Measured on this machine (2 cores), on-disk stores cost far more per lookup than the router
//! spends on a whole record (about 7.5 µs with 3 grants): `rocksdict` 10.6 µs per key in
//! batched multi-gets from a 2,000,000-key store, `fjall` 8-10 µs per hit, `redb` 50 µs per
//! insert. Here a record costs 1.1-1.5 µs with 10 grants (two SHA-256s, the map, the rows),
//! and 2,000,000 keys held by 6 grants each take 298 MiB (the ignored test `two_million_keys`).
//! The full records (what a backfill delivers) stay in the source topic (compacted: the latest
//! record per key is kept). Backfills hold their grants' keys here too, beside the live
//! stream's, so what a backfill delivered is committed with its progress and survives a crash.
//!
//! Changes are made in *batches*. A batch reads through the changes of earlier batches that are
//! not committed yet (routing runs ahead of Kafka commits) and becomes *pending* when it ends;
//! `commit(seq)` folds pending batches into the committed map once their Kafka transaction
//! committed, and `rewind()` drops every pending batch (an aborted transaction: the router
//! routes again from the committed offsets). A batch begun before a rewind is refused when it
//! ends, so nothing routed against forgotten changes is kept.

use std::collections::{HashMap, VecDeque};

use hashbrown::HashTable;
use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use sha2::{Digest as _, Sha256};

/// The first 16 bytes of a key's SHA-256.
pub type KeyDigest = [u8; 16];
/// A key's row: version (8 bytes), then (slot, hash) pairs of 8 + 8 bytes, slots ascending.
pub type Row = Box<[u8]>;

const VERSION: usize = 8;
const PAIR: usize = 16;

pub fn key_digest(key: &[u8]) -> KeyDigest {
    let full = Sha256::digest(key);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The hash kept of what a grant received (its projected, masked record bytes): SipHash-1-3
/// with fixed keys. Not a secret: it tells whether two deliveries to a grant are equal.
pub fn record_hash(data: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6578_6368_616e_6765, 0x7374_6174_6531);
    h.write(data);
    h.finish()
}

/// The first 8 bytes of a SHA-256, as a number (versions, slots).
pub fn short_hash(data: &[u8]) -> u64 {
    let full = Sha256::digest(data);
    u64::from_le_bytes(full[..8].try_into().expect("8 bytes"))
}

fn word(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

pub fn row_version(row: &[u8]) -> u64 {
    word(row, 0)
}

/// What `slot` holds of the key: the hash of its last delivery, if it holds the key.
pub fn held(row: &[u8], slot: u64) -> Option<u64> {
    row[VERSION..]
        .chunks_exact(PAIR)
        .find(|pair| word(pair, 0) == slot)
        .map(|pair| word(pair, 8))
}

fn valid_row(row: &[u8]) -> bool {
    row.len() >= VERSION && row.len() <= MAX_ROW && (row.len() - VERSION).is_multiple_of(PAIR)
}

/// What a change means for one grant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Nothing to deliver: not in the grant's scope before or after, or nothing it sees changed.
    Skip,
    /// The key enters the grant's scope.
    Create,
    /// The grant held the key and what it sees changed.
    Update,
    /// The grant held the key and no longer does (deleted, or out of its scope now).
    Delete,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Skip => "skip",
            Action::Create => "c",
            Action::Update => "u",
            Action::Delete => "d",
        }
    }
}

/// One grant's view of a change: what it held (`held`), and for a record (not a delete) whether
/// its row filter lets the record through and the hash of what it would receive.
/// Returns the action and what the grant holds afterwards.
pub fn transition(held: Option<u64>, seen: Option<(bool, u64)>) -> (Action, Option<u64>) {
    match (held, seen) {
        (None, None | Some((false, _))) => (Action::Skip, None),
        (Some(_), None | Some((false, _))) => (Action::Delete, None),
        (None, Some((true, hash))) => (Action::Create, Some(hash)),
        (Some(before), Some((true, hash))) if before == hash => (Action::Skip, Some(hash)),
        (Some(_), Some((true, hash))) => (Action::Update, Some(hash)),
    }
}

/// The row without the holdings of grants not in `slots` (ended grants: their holdings go when
/// the key next changes), or `None` when it has none of those.
pub fn pruned(row: &[u8], slots: &[u64]) -> Option<Row> {
    let rest = &row[VERSION..];
    if rest.chunks_exact(PAIR).all(|p| slots.contains(&word(p, 0))) {
        return None;
    }
    let mut out = Vec::with_capacity(row.len());
    out.extend_from_slice(&row[..VERSION]);
    for pair in rest.chunks_exact(PAIR) {
        if slots.contains(&word(pair, 0)) {
            out.extend_from_slice(pair);
        }
    }
    Some(out.into_boxed_slice())
}

/// A row with one grant's holding changed (`None`: the grant no longer holds the key).
pub fn with_holding(row: &[u8], version: u64, slot: u64, now: Option<u64>) -> Row {
    let mut out = Vec::with_capacity(row.len() + PAIR);
    out.extend_from_slice(&version.to_le_bytes());
    let mut placed = now.is_none();
    let rest = if row.len() >= VERSION {
        &row[VERSION..]
    } else {
        &[][..]
    };
    for pair in rest.chunks_exact(PAIR) {
        let s = word(pair, 0);
        if s == slot {
            continue;
        }
        if !placed && s > slot {
            push_pair(&mut out, slot, now.unwrap_or(0));
            placed = true;
        }
        out.extend_from_slice(pair);
    }
    if !placed {
        push_pair(&mut out, slot, now.unwrap_or(0));
    }
    out.into_boxed_slice()
}

fn push_pair(out: &mut Vec<u8>, slot: u64, hash: u64) {
    out.extend_from_slice(&slot.to_le_bytes());
    out.extend_from_slice(&hash.to_le_bytes());
}

/// A hasher for keys that are SHA-256 digests already: their first 8 bytes are the hash (an
/// adversary choosing keys cannot choose their digests, so no HashDoS).
#[derive(Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n; // a slot (`Store::numbers`)
    }
    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 16]` is hashed as its length (8 bytes), then its bytes.
        if bytes.len() >= 8 {
            self.0 = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        }
    }
}

type DigestMap<V> = HashMap<KeyDigest, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// Committed rows in 1 MiB blocks, each kept as the key's digest, the version and the holdings
/// with each grant's 8-byte slot replaced by its 4-byte number in `slots` (a partition sees tens
/// of grants, not billions): 12 bytes a holding instead of 16. The index holds only each row's
/// place (8 bytes and a control byte a bucket); a lookup compares the digest at that place.
/// Measured for 2,000,000 keys held by 6 grants each (`cargo test --release -- --ignored
/// --nocapture`): a map of boxed rows 377 MiB; a map from digest to place with the rows in
/// blocks 298 MiB; with slot numbers 253 MiB; this, the digest moved into the row, 225 MiB.
/// A row rewritten at its length is overwritten where it is; others are appended and the old
/// bytes counted as garbage, and when garbage outgrows the live rows the blocks are rewritten.
/// `get` gives the row back as routing and the changelog know it (version and 16-byte pairs).
#[derive(Default)]
pub struct Store {
    index: HashTable<u64>,
    blocks: Vec<Vec<u8>>,
    live: usize,
    garbage: usize,
    /// Every slot a kept row has named, by number (a slot keeps its number for good).
    slots: Vec<u64>,
    /// Slots are SHA-256 prefixes: their own hash (`DigestHasher`).
    numbers: HashMap<u64, u32, std::hash::BuildHasherDefault<DigestHasher>>,
    scratch: Vec<u8>,
}

/// A holding as the store keeps it: slot number (4 bytes), hash (8).
const KEPT_PAIR: usize = 12;
/// A kept row starts with its key's digest.
const DIGEST: usize = 16;

const BLOCK: usize = 1 << 20;
/// A row's place: block (24 bits), offset in it (20 bits), length (20 bits).
const OFFSET_BITS: u32 = 20;
const LEN_BITS: u32 = 20;
const MAX_ROW: usize = (1 << LEN_BITS) - 1;

fn place(at: u64) -> (usize, usize, usize) {
    let len = (at & ((1 << LEN_BITS) - 1)) as usize;
    let offset = ((at >> LEN_BITS) & ((1 << OFFSET_BITS) - 1)) as usize;
    let block = (at >> (LEN_BITS + OFFSET_BITS)) as usize;
    (block, offset, len)
}

/// The kept row at `at` (digest first).
fn kept_at(blocks: &[Vec<u8>], at: u64) -> &[u8] {
    let (block, offset, len) = place(at);
    &blocks[block][offset..offset + len]
}

/// A digest's hash in the index: its first 8 bytes (see `DigestHasher`).
fn digest_hash(digest: &[u8]) -> u64 {
    word(digest, 0)
}

fn append(blocks: &mut Vec<Vec<u8>>, row: &[u8]) -> u64 {
    if blocks.last().is_none_or(|b| b.len() + row.len() > BLOCK) {
        blocks.push(Vec::with_capacity(BLOCK));
    }
    let block = blocks.len() - 1;
    let last = &mut blocks[block];
    let offset = last.len();
    last.extend_from_slice(row);
    ((block as u64) << (LEN_BITS + OFFSET_BITS)) | ((offset as u64) << LEN_BITS) | row.len() as u64
}

impl Store {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    fn kept(&self, digest: &KeyDigest) -> Option<&[u8]> {
        let blocks = &self.blocks;
        self.index
            .find(digest_hash(digest), |at| {
                &kept_at(blocks, *at)[..DIGEST] == digest
            })
            .map(|at| &kept_at(blocks, *at)[DIGEST..])
    }

    /// The key's row (version, then `(slot, hash)` pairs).
    pub fn get(&self, digest: &KeyDigest) -> Option<Row> {
        self.kept(digest).map(|kept| self.unpack(kept))
    }

    /// The version of the key's row, without unpacking it.
    pub fn version(&self, digest: &KeyDigest) -> Option<u64> {
        self.kept(digest).map(row_version)
    }

    /// A kept row (without its digest) as routing knows it.
    fn unpack(&self, kept: &[u8]) -> Row {
        let mut out = Vec::with_capacity(VERSION + (kept.len() - VERSION) / KEPT_PAIR * PAIR);
        out.extend_from_slice(&kept[..VERSION]);
        for pair in kept[VERSION..].chunks_exact(KEPT_PAIR) {
            let number = u32::from_le_bytes(pair[..4].try_into().expect("4 bytes"));
            out.extend_from_slice(&self.slots[number as usize].to_le_bytes());
            out.extend_from_slice(&pair[4..]);
        }
        out.into_boxed_slice()
    }

    /// `digest` and `row` as kept, in `self.scratch`.
    fn pack(&mut self, digest: &KeyDigest, row: &[u8]) {
        let mut kept = std::mem::take(&mut self.scratch);
        kept.clear();
        kept.extend_from_slice(digest);
        kept.extend_from_slice(&row[..VERSION]);
        for pair in row[VERSION..].chunks_exact(PAIR) {
            let slot = word(pair, 0);
            let number = match self.numbers.get(&slot) {
                Some(n) => *n,
                None => {
                    let n = u32::try_from(self.slots.len()).expect("under 2^32 grant slots");
                    self.slots.push(slot);
                    self.numbers.insert(slot, n);
                    n
                }
            };
            kept.extend_from_slice(&number.to_le_bytes());
            kept.extend_from_slice(&pair[8..]);
        }
        self.scratch = kept;
    }

    pub fn put(&mut self, digest: KeyDigest, row: &[u8]) {
        assert!(
            row.len() <= MAX_ROW.min(BLOCK) - DIGEST,
            "a state row over 1 MiB"
        );
        self.pack(&digest, row);
        let kept = std::mem::take(&mut self.scratch);
        self.put_kept(&digest, &kept);
        self.scratch = kept;
    }

    fn put_kept(&mut self, digest: &KeyDigest, row: &[u8]) {
        let hash = digest_hash(digest);
        let blocks = &mut self.blocks;
        let found = self
            .index
            .find_mut(hash, |at| &kept_at(blocks, *at)[..DIGEST] == digest);
        match found {
            Some(at) => {
                let (block, offset, len) = place(*at);
                if len == row.len() {
                    blocks[block][offset..offset + len].copy_from_slice(row);
                    return;
                }
                *at = append(blocks, row);
                self.live -= len;
                self.garbage += len;
            }
            None => {
                let at = append(blocks, row);
                let blocks = &self.blocks;
                self.index
                    .insert_unique(hash, at, |at| digest_hash(kept_at(blocks, *at)));
            }
        }
        self.live += row.len();
        self.compact_if_wasteful();
    }

    pub fn remove(&mut self, digest: &KeyDigest) {
        let blocks = &self.blocks;
        let entry = self.index.find_entry(digest_hash(digest), |at| {
            &kept_at(blocks, *at)[..DIGEST] == digest
        });
        if let Ok(entry) = entry {
            let (at, _) = entry.remove();
            let (_, _, len) = place(at);
            self.live -= len;
            self.garbage += len;
            self.compact_if_wasteful();
        }
    }

    /// Every key and its row.
    pub fn iter(&self) -> impl Iterator<Item = (KeyDigest, Row)> + '_ {
        self.index.iter().map(|at| {
            let kept = kept_at(&self.blocks, *at);
            let digest: KeyDigest = kept[..DIGEST].try_into().expect("16 bytes");
            (digest, self.unpack(&kept[DIGEST..]))
        })
    }

    fn compact_if_wasteful(&mut self) {
        if self.garbage < BLOCK * 4 || self.garbage < self.live {
            return;
        }
        let old = std::mem::take(&mut self.blocks);
        let blocks = &mut self.blocks;
        for at in self.index.iter_mut() {
            *at = append(blocks, kept_at(&old, *at));
        }
        self.garbage = 0;
    }
}

/// Changes of one batch: `None` removes the key (deleted at its source).
pub type Changes = DigestMap<Option<Row>>;

#[derive(Default)]
pub struct Inner {
    committed: Store,
    pending: VecDeque<(u64, Changes)>,
    next_seq: u64,
    epoch: u64,
}

impl Inner {
    /// The version of the key's committed row (`None`: not live when the last transaction
    /// committed). A backfill keeps a record only when it is its key's committed version.
    pub fn committed_version(&self, digest: &KeyDigest) -> Option<u64> {
        self.committed.version(digest)
    }

    /// The key's row as the batches so far left it (pending ones included).
    pub fn row(&self, digest: &KeyDigest) -> Option<Row> {
        for (_, changes) in self.pending.iter().rev() {
            if let Some(change) = changes.get(digest) {
                return change.clone();
            }
        }
        self.committed.get(digest)
    }
}

/// One batch's changes, read through to the state it began on.
pub struct Batch<'s> {
    inner: MutexGuard<'s, Inner>,
    epoch: u64,
    changes: Changes,
}

impl Batch<'_> {
    pub fn row(&self, digest: &KeyDigest) -> Option<Row> {
        match self.changes.get(digest) {
            Some(change) => change.clone(),
            None => self.inner.row(digest),
        }
    }

    /// The version of the key's committed row (see `Inner::committed_version`).
    pub fn committed_version(&self, digest: &KeyDigest) -> Option<u64> {
        self.inner.committed_version(digest)
    }

    pub fn set(&mut self, digest: KeyDigest, row: Option<Row>) {
        self.changes.insert(digest, row);
    }

    /// Let go of the state's lock, keeping the changes: ``(epoch, changes)``.
    pub fn release(self) -> (u64, Changes) {
        (self.epoch, self.changes)
    }

    /// Pending from now on, unless the state was rewound since `epoch`: then `None`.
    pub fn end(mut self, epoch: u64) -> Option<u64> {
        if self.inner.epoch != epoch || self.epoch != epoch {
            return None;
        }
        let seq = self.inner.next_seq;
        self.inner.next_seq += 1;
        let changes = std::mem::take(&mut self.changes);
        self.inner.pending.push_back((seq, changes));
        Some(seq)
    }
}

/// The per-key state of one source partition (see the module documentation).
#[pyclass(module = "exchange._kernel", frozen)]
#[derive(Default)]
pub struct KeyState {
    inner: Mutex<Inner>,
}

impl KeyState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A batch begun now; it holds the state's lock until it ends or is dropped.
    pub fn batch(&self) -> Batch<'_> {
        let inner = self.lock();
        let epoch = inner.epoch;
        Batch {
            inner,
            epoch,
            changes: Changes::default(),
        }
    }
}

/// A batch's changes made by the kernel's routing, not pending yet: the router ends them once
/// it keeps the batch's routing (not when the Python core routes the batch instead).
#[pyclass(module = "exchange._kernel")]
pub struct StateChanges {
    pub state: Py<KeyState>,
    pub epoch: u64,
    pub changes: Option<Changes>,
}

#[pymethods]
impl StateChanges {
    /// Make the changes pending; their number for ``KeyState.commit``, or ``None`` when the
    /// state was rewound since the batch began (then they are dropped).
    fn end(&mut self) -> PyResult<Option<u64>> {
        let changes = self
            .changes
            .take()
            .ok_or_else(|| PyValueError::new_err("the changes have ended"))?;
        let batch = Batch {
            inner: self.state.get().lock(),
            epoch: self.epoch,
            changes,
        };
        Ok(batch.end(self.epoch))
    }

    fn __len__(&self) -> usize {
        self.changes.as_ref().map_or(0, HashMap::len)
    }
}

/// Changes made from Python (the core's path and tests), one key at a time.
#[pyclass(module = "exchange._kernel")]
pub struct StateBatch {
    state: Py<KeyState>,
    epoch: u64,
    changes: Changes,
    ended: bool,
}

#[pymethods]
impl StateBatch {
    /// Apply one accepted change of ``key`` (``version``: its event id) to every grant slot in
    /// ``views``: ``[(slot, passes its row filter, hash of what it would receive)]``; for a
    /// delete, ``views`` are ``[(slot, False, 0)]``. Slots not named keep what they hold.
    /// Returns ``[(slot, action)]`` with action ``"c"``, ``"u"``, ``"d"`` or ``"skip"``.
    ///
    /// ``keep``: the slots of the entry's grants; holdings of others (ended grants) go.
    #[pyo3(signature = (key, event_id, views, delete=false, keep=None))]
    fn change(
        &mut self,
        key: &[u8],
        event_id: &[u8],
        views: Vec<(u64, bool, u64)>,
        delete: bool,
        keep: Option<Vec<u64>>,
    ) -> PyResult<Vec<(u64, &'static str)>> {
        if self.ended {
            return Err(PyValueError::new_err("the batch has ended"));
        }
        let digest = key_digest(key);
        let before: Option<Row> = match self.changes.get(&digest) {
            Some(change) => change.clone(),
            None => self.state.get().lock().row(&digest),
        };
        let version = short_hash(event_id);
        let mut row: Row = before.unwrap_or_else(|| with_holding(&[], version, 0, None));
        let mut out = Vec::with_capacity(views.len());
        for (slot, passes, hash) in views {
            let seen = (!delete).then_some((passes, hash));
            let (action, now) = transition(held(&row, slot), seen);
            row = with_holding(&row, version, slot, now);
            out.push((slot, action.name()));
        }
        row[..VERSION].copy_from_slice(&version.to_le_bytes());
        if let Some(less) = keep.and_then(|slots| pruned(&row, &slots)) {
            row = less;
        }
        self.changes.insert(digest, (!delete).then_some(row));
        Ok(out)
    }

    /// The key's row as this batch leaves it (its changelog record's row), ``None`` when the
    /// key is not live.
    fn row<'py>(&self, py: Python<'py>, key: &[u8]) -> Option<Bound<'py, PyBytes>> {
        let digest = key_digest(key);
        match self.changes.get(&digest) {
            Some(change) => change.as_deref().map(|r| PyBytes::new(py, r)),
            None => self
                .state
                .get()
                .lock()
                .row(&digest)
                .map(|r| PyBytes::new(py, &r)),
        }
    }

    /// End the batch: its changes are pending (their number is returned for ``commit``), or,
    /// when the state was rewound since the batch began, dropped (``None``).
    fn end(&mut self) -> PyResult<Option<u64>> {
        if self.ended {
            return Err(PyValueError::new_err("the batch has ended"));
        }
        self.ended = true;
        let state = self.state.get();
        let batch = Batch {
            inner: state.lock(),
            epoch: self.epoch,
            changes: std::mem::take(&mut self.changes),
        };
        Ok(batch.end(self.epoch))
    }
}

#[pymethods]
impl KeyState {
    #[new]
    fn new() -> Self {
        KeyState::default()
    }

    /// A batch of changes made from Python.
    fn begin(slf: &Bound<'_, Self>) -> StateBatch {
        let epoch = slf.get().lock().epoch;
        StateBatch {
            state: slf.clone().unbind(),
            epoch,
            changes: Changes::default(),
            ended: false,
        }
    }

    /// Fold pending batches up to ``seq`` (their transaction committed) into the committed
    /// state, in the order they ended.
    fn commit(&self, seq: u64) {
        let mut inner = self.lock();
        while inner.pending.front().is_some_and(|(s, _)| *s <= seq) {
            let (_, changes) = inner.pending.pop_front().expect("front");
            for (digest, row) in changes {
                match row {
                    Some(row) => inner.committed.put(digest, &row),
                    None => inner.committed.remove(&digest),
                };
            }
        }
    }

    /// Drop every pending batch (their transaction aborted); batches begun before refuse to end.
    fn rewind(&self) {
        let mut inner = self.lock();
        inner.pending.clear();
        inner.epoch += 1;
    }

    /// Committed rows read back from the changelog: ``[(key digest, row or None)]``, in the
    /// order written (a later record of a key replaces an earlier one).
    fn restore(&self, records: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> PyResult<()> {
        let mut inner = self.lock();
        for (i, (digest, row)) in records.into_iter().enumerate() {
            let digest: KeyDigest = digest.try_into().map_err(|_| {
                PyValueError::new_err(format!("record {i}: a key digest is 16 bytes"))
            })?;
            match row {
                Some(row) if valid_row(&row) => {
                    inner.committed.put(digest, &row);
                }
                Some(_) => {
                    return Err(PyValueError::new_err(format!(
                        "record {i}: not a state row (8 + 16n bytes)"
                    )))
                }
                None => {
                    inner.committed.remove(&digest);
                }
            }
        }
        Ok(())
    }

    /// The key's row as routing sees it now, pending batches included: ``(version, [(slot,
    /// hash)])``, or ``None`` for a key not live.
    fn row(&self, key: &[u8]) -> Option<(u64, Vec<(u64, u64)>)> {
        let inner = self.lock();
        inner.row(&key_digest(key)).map(|r| {
            let r = &r[..];
            let pairs = r[VERSION..]
                .chunks_exact(PAIR)
                .map(|p| (word(p, 0), word(p, 8)))
                .collect();
            (row_version(r), pairs)
        })
    }

    /// The committed rows, for writing a snapshot or comparing with the changelog:
    /// ``[(key digest, row)]``.
    fn committed_rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let inner = self.lock();
        let out = PyList::empty(py);
        for (digest, row) in inner.committed.iter() {
            out.append((PyBytes::new(py, &digest), PyBytes::new(py, &row)))?;
        }
        Ok(out)
    }

    /// Live keys committed, and batches pending.
    fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.committed.len(), inner.pending.len())
    }

    /// A grant's slot: the first 8 bytes of its id's SHA-256 (stable, so rows read back from
    /// the changelog name the same grants).
    /// Whether the change of ``key`` with ``event_id`` is the key's committed version (what a
    /// backfill gives; the kernel's routing asks the same of each record it reads).
    fn is_current(&self, key: &[u8], event_id: &[u8]) -> bool {
        self.lock().committed_version(&key_digest(key)) == Some(short_hash(event_id))
    }

    #[staticmethod]
    fn slot(grant_id: &str) -> u64 {
        short_hash(grant_id.as_bytes())
    }

    /// The hash the state keeps of a delivery's record bytes (SipHash-1-3, fixed keys).
    #[staticmethod]
    #[pyo3(name = "record_hash")]
    fn py_record_hash(data: &[u8]) -> u64 {
        record_hash(data)
    }

    /// The first 16 bytes of ``key``'s SHA-256: how the state and its changelog name a key.
    #[staticmethod]
    fn digest<'py>(py: Python<'py>, key: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &key_digest(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        assert_eq!(transition(None, None), (Action::Skip, None));
        assert_eq!(transition(Some(1), None), (Action::Delete, None));
        assert_eq!(transition(None, Some((false, 5))), (Action::Skip, None));
        assert_eq!(
            transition(Some(1), Some((false, 5))),
            (Action::Delete, None)
        );
        assert_eq!(transition(None, Some((true, 5))), (Action::Create, Some(5)));
        assert_eq!(
            transition(Some(5), Some((true, 5))),
            (Action::Skip, Some(5))
        );
        assert_eq!(
            transition(Some(4), Some((true, 5))),
            (Action::Update, Some(5))
        );
    }

    #[test]
    fn holdings_stay_sorted_and_unique() {
        let row = with_holding(&[], 7, 30, Some(3));
        let row = with_holding(&row, 8, 10, Some(1));
        let row = with_holding(&row, 9, 20, Some(2));
        let row = with_holding(&row, 9, 10, Some(4));
        assert_eq!(row_version(&row), 9);
        assert_eq!(held(&row, 10), Some(4));
        assert_eq!(held(&row, 20), Some(2));
        assert_eq!(held(&row, 30), Some(3));
        let slots: Vec<u64> = row[VERSION..]
            .chunks_exact(PAIR)
            .map(|p| word(p, 0))
            .collect();
        assert_eq!(slots, vec![10, 20, 30]);
        let row = with_holding(&row, 9, 20, None);
        assert_eq!(held(&row, 20), None);
        assert_eq!(row.len(), VERSION + 2 * PAIR);
    }

    #[test]
    fn the_store_keeps_rows_across_rewrites_and_compactions() {
        let mut store = Store::default();
        let mut expected: HashMap<KeyDigest, Vec<u8>> = HashMap::new();
        // Rows of changing lengths: moves, garbage, and several compactions.
        for round in 0..40u64 {
            for k in 0..5_000u64 {
                let digest = key_digest(&k.to_le_bytes());
                if (k + round) % 7 == 0 {
                    store.remove(&digest);
                    expected.remove(&digest);
                    continue;
                }
                let pairs = ((k + round) % 5) as usize;
                let row: Vec<u8> = (0..VERSION + pairs * PAIR)
                    .map(|i| (i as u64 ^ round ^ k) as u8)
                    .collect();
                store.put(digest, &row);
                expected.insert(digest, row);
            }
        }
        assert_eq!(store.len(), expected.len());
        for (digest, row) in &expected {
            assert_eq!(store.get(digest).as_deref(), Some(&row[..]));
        }
        assert!(store.garbage < store.live.max(BLOCK * 4));
        assert!(store.blocks.len() <= store.live / BLOCK + 5);
    }
}

#[cfg(test)]
mod measure {
    use super::*;
    use std::time::Instant;

    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `cargo test --release -- --ignored --nocapture`: 2,000,000 keys, 10 grants of which 5
    /// filter rows (each holding a fifth of the keys): memory and time per record.
    #[test]
    #[ignore]
    fn two_million_keys() {
        let state = KeyState::default();
        let slots: Vec<u64> = (0..10)
            .map(|g| short_hash(format!("g{g}").as_bytes()))
            .collect();
        let before = rss_kib();
        let n: u64 = 2_000_000;
        let rounds = |label: &str, salt: u64| {
            let begun = Instant::now();
            let mut seq = 0;
            for start in (0..n).step_by(2000) {
                let mut batch = state.batch();
                for i in start..start + 2000 {
                    let key = format!("{:018}", i * 7919 % n);
                    let digest = key_digest(key.as_bytes());
                    let version = short_hash(&(i ^ salt).to_le_bytes());
                    let mut row: Row = batch
                        .row(&digest)
                        .map(Box::from)
                        .unwrap_or_else(|| with_holding(&[], version, 0, None));
                    for (g, slot) in slots.iter().enumerate() {
                        let passes = g < 5 || i % 5 == (g as u64 - 5);
                        let (_, now) = transition(held(&row, *slot), Some((passes, i ^ salt)));
                        row = with_holding(&row, version, *slot, now);
                    }
                    batch.set(digest, Some(row));
                }
                let epoch = batch.epoch;
                seq = batch.end(epoch).expect("not rewound");
                state.commit(seq);
            }
            let per = begun.elapsed().as_secs_f64() / n as f64 * 1e6;
            println!(
                "{label}: {per:.2} us per record, rss +{} MiB",
                (rss_kib() - before) / 1024
            );
            seq
        };
        rounds("creates", 1);
        rounds("updates", 2);
        rounds("unchanged", 2);
    }
}
