//! A grant's deliveries of one batch, held in Rust, and producing them through librdkafka.
//!
//! Why: the router's producing was a Python `produce` call per delivery (0.7 µs each, 3 per
//! source record with 3 grants, plus the Python loop around them and a `bytes` object made per
//! key and value): about 5.6 of the worker's 7.6 µs per record, all with the GIL held
//! (py-spy, `docs/benchmarks.md`). Here the deliveries stay one buffer and are handed to
//! librdkafka's `rd_kafka_produceva` with a cached topic handle (0.33 µs each, measured in C
//! on the same library), without the GIL.
//!
//! The librdkafka is the one confluent-kafka loaded (found by the Python side, opened again
//! here: the same library, not a second copy), and the `rd_kafka_t` is the confluent-kafka
//! producer's own, so deliveries join that producer's transactions, and its flush, commit and
//! poll see them. `exchange/kafka/native.py` checks the library's version and the handle
//! before anything is produced, and falls back to confluent-kafka's `produce` when it cannot.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::Mutex;

use libloading::Library;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

create_exception!(
    _kernel,
    ProduceError,
    PyException,
    "librdkafka refused a delivery: args (code, name, text, fatal, retriable, txn_requires_abort)."
);

const RD_KAFKA_PRODUCER: c_int = 0;
const RD_KAFKA_MSG_F_COPY: c_int = 0x2;
const ERR_QUEUE_FULL: c_int = -184;
const ERR_STATE: c_int = -172;
const ERR_INVALID_ARG: c_int = -186;
const VTYPE_RKT: c_int = 2;
const VTYPE_PARTITION: c_int = 3;
const VTYPE_VALUE: c_int = 4;
const VTYPE_KEY: c_int = 5;
const VTYPE_MSGFLAGS: c_int = 7;
const VTYPE_HEADER: c_int = 9;

// `rd_kafka_vu_t` (rdkafka.h): the value type, then a 64-byte union.
#[repr(C)]
#[derive(Clone, Copy)]
struct Mem {
    ptr: *const c_void,
    size: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    name: *const c_char,
    val: *const c_void,
    size: isize,
}

#[repr(C)]
#[derive(Clone, Copy)]
union VuValue {
    ptr: *const c_void,
    i: c_int,
    i32: i32,
    mem: Mem,
    header: Header,
    pad: [u8; 64],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Vu {
    vtype: c_int,
    u: VuValue,
}

// The layout rdkafka.h gives `rd_kafka_vu_t` on 64-bit platforms.
const _: () = assert!(std::mem::size_of::<Vu>() == 72 && std::mem::align_of::<Vu>() == 8);

impl Vu {
    fn new(vtype: c_int, u: VuValue) -> Self {
        Vu { vtype, u }
    }
    fn mem(vtype: c_int, bytes: Option<&[u8]>) -> Self {
        let (ptr, size) = bytes.map_or((std::ptr::null(), 0), |b| (b.as_ptr().cast(), b.len()));
        Vu::new(
            vtype,
            VuValue {
                mem: Mem { ptr, size },
            },
        )
    }
}

type Rk = *mut c_void;
type Rkt = *mut c_void;
type RkError = *mut c_void;

/// The librdkafka functions used, resolved once.
struct Api {
    topic_new: unsafe extern "C" fn(Rk, *const c_char, *mut c_void) -> Rkt,
    topic_destroy: unsafe extern "C" fn(Rkt),
    produceva: unsafe extern "C" fn(Rk, *const Vu, usize) -> RkError,
    error_code: unsafe extern "C" fn(RkError) -> c_int,
    error_name: unsafe extern "C" fn(RkError) -> *const c_char,
    error_string: unsafe extern "C" fn(RkError) -> *const c_char,
    error_is_fatal: unsafe extern "C" fn(RkError) -> c_int,
    error_is_retriable: unsafe extern "C" fn(RkError) -> c_int,
    error_txn_requires_abort: unsafe extern "C" fn(RkError) -> c_int,
    error_destroy: unsafe extern "C" fn(RkError),
    kind: unsafe extern "C" fn(Rk) -> c_int,
    name: unsafe extern "C" fn(Rk) -> *const c_char,
    version: unsafe extern "C" fn() -> c_int,
    /// Kept open so the functions above stay valid.
    _library: Library,
}

/// `RTLD_NOLOAD` (glibc and musl: 4).
const fn libc_rtld_noload() -> c_int {
    4
}

fn symbol<T: Copy>(library: &Library, name: &str) -> PyResult<T> {
    // SAFETY: each name is a librdkafka function with the signature its field declares
    // (rdkafka.h, stable since librdkafka 1.6).
    unsafe { library.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| PyValueError::new_err(format!("librdkafka has no {name}: {e}")))
}

impl Api {
    fn load(path: &str) -> PyResult<Self> {
        // SAFETY: RTLD_NOLOAD: only a library already loaded (by confluent-kafka) is opened,
        // which takes another reference to it and runs nothing.
        let library = unsafe {
            libloading::os::unix::Library::open(
                Some(path),
                libloading::os::unix::RTLD_NOW | libc_rtld_noload(),
            )
        }
        .map(Library::from)
        .map_err(|e| PyValueError::new_err(format!("{path} is not loaded: {e}")))?;
        Ok(Api {
            topic_new: symbol(&library, "rd_kafka_topic_new")?,
            topic_destroy: symbol(&library, "rd_kafka_topic_destroy")?,
            produceva: symbol(&library, "rd_kafka_produceva")?,
            error_code: symbol(&library, "rd_kafka_error_code")?,
            error_name: symbol(&library, "rd_kafka_error_name")?,
            error_string: symbol(&library, "rd_kafka_error_string")?,
            error_is_fatal: symbol(&library, "rd_kafka_error_is_fatal")?,
            error_is_retriable: symbol(&library, "rd_kafka_error_is_retriable")?,
            error_txn_requires_abort: symbol(&library, "rd_kafka_error_txn_requires_abort")?,
            error_destroy: symbol(&library, "rd_kafka_error_destroy")?,
            kind: symbol(&library, "rd_kafka_type")?,
            name: symbol(&library, "rd_kafka_name")?,
            version: symbol(&library, "rd_kafka_version")?,
            _library: library,
        })
    }
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka returns NUL-terminated strings it owns for the call's duration.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// What librdkafka said about a refused delivery.
struct Refusal {
    code: c_int,
    name: String,
    text: String,
    fatal: bool,
    retriable: bool,
    abortable: bool,
}

impl Refusal {
    fn into_err(self, topic: &str) -> PyErr {
        ProduceError::new_err((
            self.code,
            self.name,
            format!("cannot produce to {topic}: {}", self.text),
            self.fatal,
            self.retriable,
            self.abortable,
        ))
    }
}

/// A confluent-kafka producer's `rd_kafka_t`, to produce deliveries with.
///
/// Holds a reference to the Python producer; the topic handles taken here are released before
/// that reference is. confluent-kafka's `Producer.close()` (2.13 on) destroys the handle and
/// sets it to NULL while the object lives on, so the handle is read again from the object
/// before each use, and nothing is done with it once it changed. An attached producer must
/// not be closed while a produce runs in another thread (`TransactionalProducer` never
/// closes it; it drops it).
#[pyclass(module = "exchange._kernel", frozen)]
pub struct NativeProducer {
    api: Api,
    rk: usize,
    /// Topic handles by name (`rd_kafka_topic_new` takes a lock and a lookup per call).
    topics: Mutex<HashMap<String, usize>>,
    _owner: Py<PyAny>,
}

/// confluent-kafka's `Handle` (src/confluent_kafka/src/confluent_kafka.h): the object header,
/// then `rd_kafka_t *rk`; the same layout since confluent-kafka 0.9.
///
/// # Safety
/// `producer` must be a `confluent_kafka.Producer` (checked by the caller).
unsafe fn handle_of(producer: *mut pyo3::ffi::PyObject) -> Rk {
    *producer
        .cast::<u8>()
        .add(std::mem::size_of::<pyo3::ffi::PyObject>())
        .cast::<Rk>()
}

impl NativeProducer {
    fn rk(&self) -> Rk {
        self.rk as Rk
    }

    /// Whether the producer still has the handle attached to (not closed).
    fn open(&self) -> bool {
        // SAFETY: `_owner` is the `confluent_kafka.Producer` checked in `new`, alive while
        // this object holds it.
        unsafe { handle_of(self._owner.as_ptr()) == self.rk() }
    }

    fn check_open(&self) -> PyResult<()> {
        if self.open() {
            return Ok(());
        }
        Err(ProduceError::new_err((
            ERR_STATE,
            "_STATE".to_owned(),
            "the producer was closed".to_owned(),
            true,
            false,
            false,
        )))
    }

    fn topic(&self, name: &str) -> PyResult<Rkt> {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&rkt) = topics.get(name) {
            return Ok(rkt as Rkt);
        }
        let cname = CString::new(name)
            .map_err(|_| PyValueError::new_err(format!("topic name {name:?} holds a NUL")))?;
        // SAFETY: rk is a live producer handle (checked in `new`, kept alive by `_owner`).
        let rkt = unsafe { (self.api.topic_new)(self.rk(), cname.as_ptr(), std::ptr::null_mut()) };
        if rkt.is_null() {
            return Err(ProduceError::new_err((
                ERR_INVALID_ARG,
                "_INVALID_ARG".to_owned(),
                format!("librdkafka refused the topic name {name:?}"),
                false,
                false,
                false,
            )));
        }
        topics.insert(name.to_owned(), rkt as usize);
        Ok(rkt)
    }

    /// Hand one delivery over; `Ok(false)` when the local queue is full.
    fn produce_one(
        &self,
        rkt: Rkt,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: i32,
        headers: &[(CString, Option<Vec<u8>>)],
        vus: &mut Vec<Vu>,
    ) -> Result<bool, Refusal> {
        vus.clear();
        vus.push(Vu::new(
            VTYPE_RKT,
            VuValue {
                ptr: rkt.cast_const(),
            },
        ));
        vus.push(Vu::new(VTYPE_PARTITION, VuValue { i32: partition }));
        vus.push(Vu::mem(VTYPE_KEY, key));
        vus.push(Vu::mem(VTYPE_VALUE, value));
        vus.push(Vu::new(
            VTYPE_MSGFLAGS,
            VuValue {
                i: RD_KAFKA_MSG_F_COPY,
            },
        ));
        for (name, val) in headers {
            let (ptr, size) = val.as_ref().map_or((std::ptr::null(), -1), |v| {
                (v.as_ptr().cast(), v.len() as isize)
            });
            vus.push(Vu::new(
                VTYPE_HEADER,
                VuValue {
                    header: Header {
                        name: name.as_ptr(),
                        val: ptr,
                        size,
                    },
                },
            ));
        }
        // SAFETY: the vus point into `key`, `value` and `headers`, which outlive the call;
        // RD_KAFKA_MSG_F_COPY makes librdkafka copy them.
        let error = unsafe { (self.api.produceva)(self.rk(), vus.as_ptr(), vus.len()) };
        if error.is_null() {
            return Ok(true);
        }
        // SAFETY: `error` is the live error object librdkafka returned; destroyed once below.
        let refusal = unsafe {
            let code = (self.api.error_code)(error);
            let refusal = Refusal {
                code,
                name: text((self.api.error_name)(error)),
                text: text((self.api.error_string)(error)),
                fatal: (self.api.error_is_fatal)(error) != 0,
                retriable: (self.api.error_is_retriable)(error) != 0,
                abortable: (self.api.error_txn_requires_abort)(error) != 0,
            };
            (self.api.error_destroy)(error);
            refusal
        };
        if refusal.code == ERR_QUEUE_FULL {
            return Ok(false);
        }
        Err(refusal)
    }
}

impl Drop for NativeProducer {
    fn drop(&mut self) {
        if !self.open() {
            return; // closed: its topics went with it
        }
        let topics = self
            .topics
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, rkt) in topics.drain() {
            // SAFETY: each handle was taken once in `topic`; the producer is still alive
            // (`_owner` is released after this body).
            unsafe { (self.api.topic_destroy)(rkt as Rkt) };
        }
    }
}

#[pymethods]
impl NativeProducer {
    /// Attach to ``producer`` (a ``confluent_kafka.Producer``) through ``library``, the path of
    /// the librdkafka it loaded, which must be loaded already and be ``version``
    /// (``confluent_kafka.libversion()[1]``). ``name_prefix`` is what ``rd_kafka_name`` must
    /// start with (the producer's ``client.id`` and ``#producer-``): a check that the handle
    /// read from the Python object is that producer's.
    #[new]
    fn new(
        producer: Bound<'_, PyAny>,
        library: &str,
        name_prefix: &str,
        version: i32,
    ) -> PyResult<Self> {
        let class = producer
            .py()
            .import("confluent_kafka")?
            .getattr("Producer")?;
        if !producer.is_instance(&class)? {
            return Err(PyValueError::new_err("not a confluent_kafka.Producer"));
        }
        let api = Api::load(library)?;
        // SAFETY: a function without arguments.
        let found = unsafe { (api.version)() };
        if found != version {
            return Err(PyValueError::new_err(format!(
                "{library} is librdkafka {found:#x}, confluent-kafka uses {version:#x}"
            )));
        }
        // SAFETY: `producer` is a confluent_kafka.Producer (checked above).
        let rk = unsafe { handle_of(producer.as_ptr()) };
        if rk.is_null() {
            return Err(PyValueError::new_err(
                "the producer has no librdkafka handle (closed)",
            ));
        }
        // SAFETY: rk is confluent-kafka's producer handle (layout above), alive while
        // `producer` is.
        let (kind, name) = unsafe { ((api.kind)(rk), text((api.name)(rk))) };
        if kind != RD_KAFKA_PRODUCER || !name.starts_with(name_prefix) {
            return Err(PyValueError::new_err(format!(
                "the handle read is not this producer's (type {kind}, name {name:?})"
            )));
        }
        Ok(NativeProducer {
            api,
            rk: rk as usize,
            topics: Mutex::new(HashMap::new()),
            _owner: producer.unbind(),
        })
    }
}

/// A delivery: spans of the key and value in the buffer (`None`: null), its partition (-1:
/// librdkafka picks it) and its headers' index, if it has headers.
struct Item {
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    partition: i32,
    headers: Option<usize>,
}

pub type Headers = Vec<(CString, Option<Vec<u8>>)>;

/// One topic's deliveries of a batch, in order.
#[pyclass(module = "exchange._kernel", frozen)]
#[derive(Default)]
pub struct Deliveries {
    data: Vec<u8>,
    items: Vec<Item>,
    headers: Vec<(usize, Headers)>,
}

impl Deliveries {
    pub fn with_capacity(items: usize, bytes: usize) -> Self {
        Deliveries {
            data: Vec::with_capacity(bytes),
            items: Vec::with_capacity(items),
            headers: Vec::new(),
        }
    }

    fn put(&mut self, bytes: Option<&[u8]>) -> Option<(usize, usize)> {
        bytes.map(|b| {
            let start = self.data.len();
            self.data.extend_from_slice(b);
            (start, self.data.len())
        })
    }

    /// Append a delivery whose value is already at the end of the buffer, from `value_start`.
    pub fn push_tail(&mut self, key: Option<&[u8]>, value_start: usize, partition: i32) {
        let value = Some((value_start, self.data.len()));
        let key = self.put(key);
        self.items.push(Item {
            key,
            value,
            partition,
            headers: None,
        });
    }

    /// Append a delivery with its own key and value (and headers).
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partition: i32,
        headers: Option<Headers>,
    ) {
        let key = self.put(key);
        let value = self.put(value);
        let headers = headers.map(|h| {
            self.headers.push((self.items.len(), h));
            self.headers.len() - 1
        });
        self.items.push(Item {
            key,
            value,
            partition,
            headers,
        });
    }

    /// Delivery ``i``'s key and value.
    pub fn item_bytes(&self, i: usize) -> (Option<&[u8]>, Option<&[u8]>) {
        let item = &self.items[i];
        (self.span(item.key), self.span(item.value))
    }

    /// How many deliveries it holds.
    pub fn count(&self) -> usize {
        self.items.len()
    }

    /// The buffer the next value is written into (then `push_tail`).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    fn span(&self, span: Option<(usize, usize)>) -> Option<&[u8]> {
        span.map(|(a, b)| &self.data[a..b])
    }

    fn bytes_list<'py>(
        &self,
        py: Python<'py>,
        pick: impl Fn(&Item) -> Option<(usize, usize)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let objs: Vec<PyObject> = self
            .items
            .iter()
            .map(|i| match self.span(pick(i)) {
                Some(b) => PyBytes::new(py, b).into_any().unbind(),
                None => py.None(),
            })
            .collect();
        PyList::new(py, objs)
    }
}

fn optional_bytes<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a [u8]>> {
    if obj.is_none() {
        return Ok(None);
    }
    Ok(Some(obj.downcast::<PyBytes>()?.as_bytes()))
}

fn header_list(headers: &Bound<'_, PyAny>) -> PyResult<Headers> {
    let mut out = Headers::new();
    for pair in headers.try_iter()? {
        let (name, value): (String, Option<Vec<u8>>) = pair?.extract()?;
        let name =
            CString::new(name).map_err(|_| PyValueError::new_err("a header name holds a NUL"))?;
        out.push((name, value));
    }
    Ok(out)
}

#[pymethods]
impl Deliveries {
    /// Deliveries from columns (``headers``: by index, ``[(name, bytes | None)]``), for
    /// deliveries made in Python.
    #[staticmethod]
    fn from_columns(
        keys: &Bound<'_, PyList>,
        values: &Bound<'_, PyList>,
        partitions: Vec<i32>,
        headers: &Bound<'_, PyDict>,
    ) -> PyResult<Self> {
        if keys.len() != values.len() || keys.len() != partitions.len() {
            return Err(PyValueError::new_err(
                "keys, values and partitions differ in length",
            ));
        }
        let mut out = Deliveries::with_capacity(keys.len(), 0);
        for (i, ((key, value), partition)) in
            keys.iter().zip(values.iter()).zip(partitions).enumerate()
        {
            let h = match headers.is_empty() {
                true => None,
                false => headers.get_item(i)?.map(|h| header_list(&h)).transpose()?,
            };
            let key = optional_bytes(&key)?;
            let value = optional_bytes(&value)?;
            out.push(key, value, partition, h);
        }
        Ok(out)
    }

    fn __len__(&self) -> usize {
        self.items.len()
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.bytes_list(py, |i| i.key)
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.bytes_list(py, |i| i.value)
    }

    fn partitions(&self) -> Vec<i32> {
        self.items.iter().map(|i| i.partition).collect()
    }

    /// Headers by delivery index: ``{i: [(name, bytes | None)]}``.
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (i, headers) in &self.headers {
            let pairs: Vec<(String, Option<Bound<'py, PyBytes>>)> = headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string_lossy().into_owned(),
                        v.as_ref().map(|v| PyBytes::new(py, v)),
                    )
                })
                .collect();
            out.set_item(i, PyList::new(py, pairs)?)?;
        }
        Ok(out)
    }

    /// Produce deliveries ``start`` on to ``topic``, without the GIL. Returns the index of the
    /// first one not handed over (the length when all were); it stops early only when the
    /// producer's local queue is full: poll, then call again from there. Raises
    /// ``ProduceError`` when librdkafka refuses one for any other reason.
    fn produce(
        &self,
        py: Python<'_>,
        producer: &NativeProducer,
        topic: &str,
        start: usize,
    ) -> PyResult<usize> {
        producer.check_open()?;
        let rkt = producer.topic(topic)? as usize;
        let none: Headers = Vec::new();
        py.allow_threads(|| {
            let mut vus: Vec<Vu> = Vec::with_capacity(8);
            for (i, item) in self.items.iter().enumerate().skip(start) {
                let headers = item.headers.map_or(&none, |h| &self.headers[h].1);
                match producer.produce_one(
                    rkt as Rkt,
                    self.span(item.key),
                    self.span(item.value),
                    item.partition,
                    headers,
                    &mut vus,
                ) {
                    Ok(true) => {}
                    Ok(false) => return Ok(i),
                    Err(refusal) => return Err(refusal),
                }
            }
            Ok(self.items.len())
        })
        .map_err(|r| r.into_err(topic))
    }
}

/// A tombstone's headers, as `exchange.routing.core.tombstone_headers` makes them.
pub fn tombstone_headers(grant_id: &[u8], event_id: &[u8], position: &[u8]) -> Headers {
    [
        ("exchange.grant", grant_id),
        ("exchange.event_id", event_id),
        ("exchange.source", position),
    ]
    .into_iter()
    .map(|(name, value)| {
        (
            CString::new(name).expect("no NUL in a header name"),
            Some(value.to_vec()),
        )
    })
    .collect()
}
