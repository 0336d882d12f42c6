//! Receipt digests fed from the kernel's delivery buffers.
//!
//! A receipt's digest is a running SHA-256 over its deliveries' keys and values, each
//! length-prefixed (`exchange.routing.receipts.digest_update`, what `exchange audit verify`
//! recomputes). The kernel used to lay that input out as a copy of every delivery and hand it
//! to Python as `bytes`: 36 MB of the 10,000-grant worker's heap peak (heaptrack, 2026-12-06),
//! held until the digest thread had fed it. A `Feed` names the deliveries instead (the grant's
//! buffer and 4 bytes per delivery), and `ReceiptDigest` hashes them from that buffer without
//! the GIL.

use std::sync::Mutex;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sha2::{Digest, Sha256};

use crate::deliveries::Deliveries;

/// Inputs of at least this many bytes are hashed without the GIL (below it, releasing and
/// taking it back costs more than the hashing: SHA-256 runs at about 2 GB/s here).
const NO_GIL_BYTES: usize = 4096;
/// Feeds of at least this many deliveries are hashed without the GIL (a delivery is a few
/// hundred bytes; with 10,000 grants most feeds hold one or two).
const NO_GIL_ITEMS: usize = 8;

/// Some deliveries of one buffer, in the order they feed a receipt's digest.
#[pyclass(module = "exchange._kernel", frozen)]
pub struct Feed {
    deliveries: Py<Deliveries>,
    items: Vec<u32>,
}

impl Feed {
    pub fn new(deliveries: Py<Deliveries>, items: Vec<u32>) -> Self {
        Feed { deliveries, items }
    }
}

#[pymethods]
impl Feed {
    fn __len__(&self) -> usize {
        self.items.len()
    }
}

/// A receipt's running SHA-256.
#[pyclass(module = "exchange._kernel", frozen)]
#[derive(Default)]
pub struct ReceiptDigest {
    state: Mutex<Sha256>,
}

/// What `update` takes: bytes laid out as the digest input, or deliveries to feed.
#[derive(FromPyObject)]
enum Input<'py> {
    Feed(PyRef<'py, Feed>),
    Bytes(Bound<'py, PyBytes>),
}

fn feed_deliveries(state: &mut Sha256, deliveries: &Deliveries, items: &[u32]) {
    for &i in items {
        let (key, value) = deliveries.item_bytes(i as usize);
        for part in [key.unwrap_or(&[]), value.unwrap_or(&[])] {
            state.update((part.len() as u32).to_be_bytes());
            state.update(part);
        }
    }
}

impl ReceiptDigest {
    /// The state, unless a panic while hashing left it half fed: then the digest is wrong
    /// and says so rather than go on.
    fn state(&self) -> PyResult<std::sync::MutexGuard<'_, Sha256>> {
        self.state
            .lock()
            .map_err(|_| PyRuntimeError::new_err("the receipt digest failed while it was fed"))
    }
}

#[pymethods]
impl ReceiptDigest {
    #[new]
    fn new() -> Self {
        ReceiptDigest::default()
    }

    /// Feed ``data``: `bytes` already laid out as the digest input, or a `Feed`.
    fn update(&self, py: Python<'_>, data: Input<'_>) -> PyResult<()> {
        match data {
            Input::Bytes(bytes) => {
                let bytes = bytes.as_bytes();
                if bytes.len() < NO_GIL_BYTES {
                    self.state()?.update(bytes);
                    Ok(())
                } else {
                    py.allow_threads(|| self.state().map(|mut s| s.update(bytes)))
                }
            }
            Input::Feed(feed) => {
                let deliveries = feed.deliveries.get();
                let items = &feed.items;
                if items.len() < NO_GIL_ITEMS {
                    feed_deliveries(&mut *self.state()?, deliveries, items);
                    Ok(())
                } else {
                    py.allow_threads(|| {
                        self.state()
                            .map(|mut s| feed_deliveries(&mut s, deliveries, items))
                    })
                }
            }
        }
    }

    /// The digest so far, as hex (the state runs on).
    fn hexdigest(&self) -> PyResult<String> {
        let digest = self.state()?.clone().finalize();
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}
