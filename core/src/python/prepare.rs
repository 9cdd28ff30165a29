//! `prepare_spans` / `prepare_logs`: one export request decoded, selected and sealed in
//! one call, without the GIL; `otaudit.otlp.native` turns the result into `Prepared`.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::columns::{Columns, Conventions, FIELDS};
use crate::redact::{Action, Pattern, Redactor};
use crate::select::{self, Context, Fatal, Limits, Options, Outcome, Reason};

pyo3::create_exception!(
    _core,
    Refused,
    pyo3::exceptions::PyException,
    "The whole request is refused: args are (kind, *data) (see otaudit/_core.pyi)."
);

/// What requests are prepared under: the audit attribute, the limits, the conventions
/// and the redaction rules (built once per setting by `otaudit.otlp.native`).
#[pyclass(frozen, module = "otaudit._core")]
pub struct PrepareOptions {
    inner: Options,
}

fn field_index(name: &str) -> PyResult<usize> {
    FIELDS
        .iter()
        .position(|f| *f == name)
        .ok_or_else(|| PyValueError::new_err(format!("unknown audit field {name:?}")))
}

/// The conventions as `otaudit.otlp.native.conventions_args` passes them (shared by
/// every binding that derives columns).
pub(crate) fn conventions(
    field_sources: Vec<(String, Vec<String>)>,
    status_result: Vec<(i64, String)>,
    required_fields: Vec<String>,
    producer_id: String,
    producer_seq: String,
    service: String,
) -> PyResult<Conventions> {
    let mut sources: [Vec<String>; 7] = Default::default();
    for (name, keys) in field_sources {
        sources[field_index(&name)?] = keys;
    }
    let required = required_fields
        .iter()
        .map(|f| field_index(f))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Conventions {
        field_sources: sources,
        status_result,
        required,
        producer_id,
        producer_seq,
        service,
    })
}

#[pymethods]
impl PrepareOptions {
    #[new]
    #[pyo3(signature = (
        *, audit_attribute, max_attributes, max_value_bytes, max_resource_bytes, max_records,
        max_sealed_ratio, min_sealed_budget, max_reasons, field_sources, status_result,
        required_fields, producer_id, producer_seq, service, redact_rules, redaction_key
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        audit_attribute: String,
        max_attributes: usize,
        max_value_bytes: usize,
        max_resource_bytes: usize,
        max_records: usize,
        max_sealed_ratio: u64,
        min_sealed_budget: u64,
        max_reasons: usize,
        field_sources: Vec<(String, Vec<String>)>,
        status_result: Vec<(i64, String)>,
        required_fields: Vec<String>,
        producer_id: String,
        producer_seq: String,
        service: String,
        redact_rules: Vec<(String, String)>,
        redaction_key: Option<Vec<u8>>,
    ) -> PyResult<Self> {
        let conventions = conventions(
            field_sources,
            status_result,
            required_fields,
            producer_id,
            producer_seq,
            service,
        )?;
        let redactor = if redact_rules.is_empty() {
            None
        } else {
            let mut rules = Vec::with_capacity(redact_rules.len());
            for (action, pattern) in &redact_rules {
                let action = match action.as_str() {
                    "drop" => Action::Drop,
                    "hmac" => Action::Hmac,
                    _ => return Err(PyValueError::new_err(format!("unknown action {action:?}"))),
                };
                rules.push((action, Pattern::new(pattern)));
            }
            Some(Redactor {
                rules,
                key: redaction_key.unwrap_or_default(),
            })
        };
        Ok(PrepareOptions {
            inner: Options {
                audit_attribute,
                limits: Limits {
                    max_attributes,
                    max_value_bytes,
                    max_resource_bytes,
                    max_records,
                    max_sealed_ratio,
                    min_sealed_budget,
                },
                conventions,
                redactor,
                max_reasons,
            },
        })
    }
}

fn what(context: Context) -> &'static str {
    match context {
        Context::Record => "",
        Context::Resource => "resource",
        Context::Scope => "scope",
    }
}

fn reason<'py>(py: Python<'py>, reason: &Reason) -> PyResult<(&'static str, Bound<'py, PyTuple>)> {
    Ok(match reason {
        Reason::Attributes {
            what: w,
            count,
            limit,
        } => ("attributes", (what(*w), *count, *limit).into_pyobject(py)?),
        Reason::Value {
            what: w,
            key,
            size,
            limit,
        } => (
            "value",
            (what(*w), key.as_str(), *size, *limit).into_pyobject(py)?,
        ),
        Reason::Size {
            what: w,
            size,
            limit,
        } => ("size", (what(*w), *size, *limit).into_pyobject(py)?),
        Reason::Budget {
            budget,
            request_bytes,
        } => ("budget", (*budget, *request_bytes).into_pyobject(py)?),
        Reason::Duplicate(key) => ("duplicate", (key.as_str(),).into_pyobject(py)?),
        Reason::Time { name, value } => ("time", (*name, *value).into_pyobject(py)?),
    })
}

fn opt_str<'py>(py: Python<'py>, value: &Option<String>) -> Bound<'py, PyAny> {
    match value {
        Some(s) => PyString::new(py, s).into_any(),
        None => py.None().into_bound(py),
    }
}

/// A string most records of a request share (signal, pipeline, receive time), made once.
struct Shared<'py> {
    last: Option<(String, Bound<'py, PyAny>)>,
}

impl<'py> Shared<'py> {
    fn get(&mut self, py: Python<'py>, text: &str) -> Bound<'py, PyAny> {
        match &self.last {
            Some((t, obj)) if t == text => obj.clone(),
            _ => {
                let obj = PyString::new(py, text).into_any();
                self.last = Some((text.to_owned(), obj.clone()));
                obj
            }
        }
    }
}

fn columns<'py>(
    py: Python<'py>,
    c: &Columns,
    resource: &Bound<'py, PyAny>,
    service: &Bound<'py, PyAny>,
    shared: &mut [Shared<'py>; 3],
) -> PyResult<Bound<'py, PyTuple>> {
    let s = |text: &str| PyString::new(py, text).into_any();
    let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(21);
    items.push(shared[0].get(py, &c.signal));
    items.push(c.time_unix_nano.into_pyobject(py)?.into_any());
    items.push(s(&c.timestamp));
    items.push(shared[1].get(py, &c.received_at));
    items.push(shared[2].get(py, &c.pipeline));
    items.push(s(&c.trace_id));
    items.push(s(&c.span_id));
    items.push(s(&c.name));
    items.push(service.clone());
    for field in &c.fields {
        items.push(opt_str(py, field));
    }
    items.push(opt_str(py, &c.producer));
    items.push(match c.producer_seq {
        Some(n) => n.into_pyobject(py)?.into_any(),
        None => py.None().into_bound(py),
    });
    items.push(opt_str(py, &c.missing));
    items.push(s(&c.attributes));
    items.push(resource.clone());
    PyTuple::new(py, items)
}

/// Python's `Entry`, `Columns` and `ResourcePart` classes (`otaudit.record`), and how to
/// make their instances without running their `__init__`: `object.__new__` and the
/// slots set as `object.__setattr__` sets them (the frozen dataclasses' own `__init__`
/// does the same, one interpreted call slower), `tuple.__new__` for the named tuple.
struct Types<'py> {
    entry: Bound<'py, PyAny>,
    columns: Bound<'py, PyAny>,
    part: Bound<'py, PyAny>,
    object_new: Bound<'py, PyAny>,
    tuple_new: Bound<'py, PyAny>,
}

impl<'py> Types<'py> {
    fn new(py: Python<'py>, types: &Bound<'py, PyTuple>) -> PyResult<Types<'py>> {
        let builtins = PyModule::import(py, "builtins")?;
        Ok(Types {
            entry: types.get_item(0)?,
            columns: types.get_item(1)?,
            part: types.get_item(2)?,
            object_new: builtins.getattr("object")?.getattr("__new__")?,
            tuple_new: builtins.getattr("tuple")?.getattr("__new__")?,
        })
    }

    fn instance(
        &self,
        cls: &Bound<'py, PyAny>,
        fields: &[(&Bound<'py, PyString>, Bound<'py, PyAny>)],
    ) -> PyResult<Bound<'py, PyAny>> {
        let obj = self.object_new.call1((cls,))?;
        for (name, value) in fields {
            // SAFETY: three live object pointers; the call only borrows them.
            let status = unsafe {
                pyo3::ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr())
            };
            if status < 0 {
                return Err(PyErr::fetch(obj.py()));
            }
        }
        Ok(obj)
    }
}

fn outcome<'py>(
    py: Python<'py>,
    out: Outcome,
    types: Option<&Bound<'py, PyTuple>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let types = types.map(|t| Types::new(py, t)).transpose()?;
    let reasons = PyList::empty(py);
    for rejection in &out.reasons {
        let [r, s, i] = rejection.at;
        let (kind, data) = reason(py, &rejection.reason)?;
        reasons.append((r, s, i, kind, data))?;
    }
    let parts = PyList::empty(py);
    let mut shared = Vec::with_capacity(out.parts.len());
    for (part, cols) in out.parts.iter().zip(&out.part_columns) {
        let hash = PyBytes::new(py, &part.hash).into_any();
        let body = PyBytes::new(py, part.body.as_bytes()).into_any();
        match &types {
            Some(t) => parts.append(t.instance(
                &t.part,
                &[(intern!(py, "hash"), hash), (intern!(py, "body"), body)],
            )?)?,
            None => parts.append((hash, body))?,
        }
        shared.push((
            PyString::new(py, &cols.flat).into_any(),
            opt_str(py, &cols.service),
        ));
    }
    let records = PyList::empty(py);
    let mut constant = [(); 3].map(|()| Shared { last: None });
    for rec in &out.records {
        let (resource, service) = &shared[rec.part];
        let sealed = PyBytes::new(py, rec.sealed.as_bytes()).into_any();
        let leaf = PyBytes::new(py, &rec.leaf).into_any();
        let key = PyBytes::new(py, &rec.dedup_key).into_any();
        let cols = columns(py, &rec.columns, resource, service, &mut constant)?;
        match &types {
            Some(t) => {
                let cols = t.tuple_new.call1((&t.columns, cols))?;
                records.append(t.instance(
                    &t.entry,
                    &[
                        (intern!(py, "sealed"), sealed),
                        (intern!(py, "leaf"), leaf),
                        (intern!(py, "dedup_key"), key),
                        (intern!(py, "columns"), cols),
                        (intern!(py, "resource"), parts.get_item(rec.part)?),
                        (
                            intern!(py, "resource_at"),
                            rec.resource_at.into_pyobject(py)?.into_any(),
                        ),
                    ],
                )?)?
            }
            None => records.append((sealed, leaf, key, cols, rec.part, rec.resource_at))?,
        }
    }
    (
        out.received,
        out.dropped,
        out.rejected,
        reasons,
        out.near_misses,
        out.near_miss_keys,
        parts,
        records,
    )
        .into_pyobject(py)
}

fn refused(py: Python<'_>, fatal: Fatal) -> PyErr {
    let args = match fatal {
        Fatal::TooManyOnWire(n) => ("too_many_on_wire", n).into_pyobject(py),
        Fatal::TooMany(n) => ("too_many", n).into_pyobject(py),
        Fatal::Undecodable => ("undecodable",).into_pyobject(py),
        Fatal::BadId {
            at: [r, s, i],
            name,
            size,
            got,
        } => ("bad_id", r, s, i, name, size, got).into_pyobject(py),
    };
    match args {
        Ok(args) => Refused::new_err(args.unbind()),
        Err(err) => err,
    }
}

type Prepare = fn(&[u8], &Options, &str, i64) -> Result<Outcome, Fatal>;

fn run<'py>(
    py: Python<'py>,
    prepare: Prepare,
    body: &[u8],
    options: &Bound<'py, PrepareOptions>,
    pipeline: &str,
    received_ns: i64,
    types: Option<&Bound<'py, PyTuple>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let opts = &options.get().inner;
    match py.detach(|| prepare(body, opts, pipeline, received_ns)) {
        Ok(out) => outcome(py, out, types),
        Err(fatal) => Err(refused(py, fatal)),
    }
}

/// Decode, select and seal the audit spans of an `ExportTraceServiceRequest`.
#[pyfunction]
#[pyo3(signature = (body, options, pipeline, received_ns, types=None))]
fn prepare_spans<'py>(
    py: Python<'py>,
    body: &[u8],
    options: &Bound<'py, PrepareOptions>,
    pipeline: &str,
    received_ns: i64,
    types: Option<&Bound<'py, PyTuple>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let prepare = select::prepare_spans;
    run(py, prepare, body, options, pipeline, received_ns, types)
}

/// Decode, select and seal the audit log records of an `ExportLogsServiceRequest`.
#[pyfunction]
#[pyo3(signature = (body, options, pipeline, received_ns, types=None))]
fn prepare_logs<'py>(
    py: Python<'py>,
    body: &[u8],
    options: &Bound<'py, PrepareOptions>,
    pipeline: &str,
    received_ns: i64,
    types: Option<&Bound<'py, PyTuple>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let prepare = select::prepare_logs;
    run(py, prepare, body, options, pipeline, received_ns, types)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PrepareOptions>()?;
    m.add("Refused", m.py().get_type::<Refused>())?;
    m.add_function(wrap_pyfunction!(prepare_spans, m)?)?;
    m.add_function(wrap_pyfunction!(prepare_logs, m)?)?;
    Ok(())
}
