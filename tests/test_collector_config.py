"""The Collector configuration in deploy/otel-collector/audit-pipeline.yaml.

Structure checks on the parsed YAML, plus small, clearly labelled models of
the documented Collector semantics that show why the widely copied blog
configuration loses or mislabels audit data. docs/collector.md explains the
choices. A real ``otelcol-contrib validate`` runs only where that binary is on
PATH (no package registry this project uses ships it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG_PATH = ROOT / "deploy" / "otel-collector" / "audit-pipeline.yaml"
DOC_PATH = ROOT / "docs" / "collector.md"

AUDIT_ATTRIBUTE = "audit.action"
AUDIT_PIPELINES = {"traces/audit": ("traces", "span"), "logs/audit": ("logs", "log_record")}
DEFAULT_PIPELINES = ("traces/default", "logs/default")
DROP_WITHOUT_AUDIT_ATTRIBUTE = f'attributes["{AUDIT_ATTRIBUTE}"] == nil'
TRANSFORM_CONTEXTS = {
    "traces/audit": ("trace_statements", "span"),
    "logs/audit": ("log_statements", "log"),
}
STAMP_ATTRIBUTE = "audit.collector_received_at"
# otaudit's rule for X-Audit-Pipeline (docs/operations.md): 1-64 letters, digits or ._/-.
PIPELINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
# otaudit serve --max-body-bytes default (docs/operations.md), measured after decompression.
OTAUDIT_MAX_BODY_BYTES = 16 * 1024 * 1024

Attrs = dict[str, Any]


def load_config() -> dict[str, Any]:
    data = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load_config()


def component_type(component_id: str) -> str:
    """``otlp_http/audit`` -> ``otlp_http``: the part before the optional ``/name``."""
    return component_id.split("/", 1)[0]


def pipelines(cfg: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    result: dict[str, dict[str, list[str]]] = cfg["service"]["pipelines"]
    return result


def audit_exporter(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    exporters = {e for name in AUDIT_PIPELINES for e in pipelines(cfg)[name]["exporters"]}
    assert len(exporters) == 1, f"both audit pipelines feed one exporter, got {exporters}"
    (exporter_id,) = exporters
    settings: dict[str, Any] = cfg["exporters"][exporter_id]
    return exporter_id, settings


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Yield (path, key, value) for every mapping entry below ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk(item, f"{path}[{i}]")


# --- structure ----------------------------------------------------------------------------


def test_pipelines_are_exactly_the_audit_and_default_ones(config: dict[str, Any]) -> None:
    assert set(pipelines(config)) == set(AUDIT_PIPELINES) | set(DEFAULT_PIPELINES)


def test_every_pipeline_component_is_declared_and_every_declaration_used(
    config: dict[str, Any],
) -> None:
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines(config).items():
        assert set(pipeline) <= set(used), f"{name}: unexpected keys {set(pipeline) - set(used)}"
        assert pipeline["receivers"] and pipeline["exporters"], name
        for section, ids in pipeline.items():
            assert len(ids) == len(set(ids)), f"{name}: {section} listed twice"
            for component_id in ids:
                assert component_id in (config.get(section) or {}), (
                    f"{name} uses {section[:-1]} {component_id!r}, which is not declared"
                )
            used[section].update(ids)
    for section, used_ids in used.items():
        assert set(config.get(section) or {}) == used_ids, f"declared but unused {section}"


def test_service_extensions_are_declared(config: dict[str, Any]) -> None:
    listed = config["service"]["extensions"]
    assert listed, "the file_storage extension must be started"
    assert set(listed) <= set(config["extensions"])
    assert set(config["extensions"]) <= set(listed), "an extension is declared but never started"


def test_otlp_receiver_takes_grpc_and_http(config: dict[str, Any]) -> None:
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    for pipeline in pipelines(config).values():
        assert pipeline["receivers"] == ["otlp"]


@pytest.mark.parametrize("name", sorted(AUDIT_PIPELINES))
def test_audit_pipeline_processor_order(config: dict[str, Any], name: str) -> None:
    processors = pipelines(config)[name]["processors"]
    types = [component_type(p) for p in processors]
    assert types[0] == "memory_limiter", "memory_limiter must come first"
    assert types.count("filter") == 1 and types.count("transform") == 1
    assert types.index("filter") < types.index("transform"), "filter before transform"
    # No batch processor: it acknowledges before exporting and swallows export errors,
    # which would put acknowledged audit records in memory in front of the disk queue.
    # Batching happens in the exporter, after the persistent queue (checked below).
    assert "batch" not in types


@pytest.mark.parametrize("name", sorted(AUDIT_PIPELINES))
def test_audit_filter_drops_records_without_the_attribute(
    config: dict[str, Any], name: str
) -> None:
    signal, context = AUDIT_PIPELINES[name]
    (filter_id,) = [p for p in pipelines(config)[name]["processors"] if p.startswith("filter")]
    settings = config["processors"][filter_id]
    assert settings.get("error_mode") == "ignore", "error_mode must be set explicitly (ignore)"
    assert settings[signal] == {context: [DROP_WITHOUT_AUDIT_ATTRIBUTE]}


@pytest.mark.parametrize("name", sorted(AUDIT_PIPELINES))
def test_audit_transform_stamps_the_collector_time(config: dict[str, Any], name: str) -> None:
    key, context = TRANSFORM_CONTEXTS[name]
    (transform_id,) = [
        p for p in pipelines(config)[name]["processors"] if component_type(p) == "transform"
    ]
    settings = config["processors"][transform_id]
    assert settings.get("error_mode") in {"ignore", "propagate"}, "error_mode must be explicit"
    (group,) = settings[key]
    assert group["context"] == context
    (statement,) = group["statements"]
    assert statement.startswith(f'set(attributes["{STAMP_ATTRIBUTE}"], ')
    assert "Now()" in statement, "the value must be the Collector's clock, not a constant"
    assert re.search(r'FormatTime\(Now\(\), "%Y-%m-%dT%H:%M:%S\.%s%j"\)', statement)


def test_audit_exporter_is_otlp_http_to_otaudit(config: dict[str, Any]) -> None:
    exporter_id, settings = audit_exporter(config)
    assert component_type(exporter_id) == "otlp_http"
    assert settings["endpoint"].startswith(("http://", "https://"))
    assert not settings["endpoint"].rstrip("/").endswith(("/v1/traces", "/v1/logs"))
    pipeline_name = settings["headers"]["X-Audit-Pipeline"]
    assert pipeline_name == "soc2"
    assert PIPELINE_NAME.fullmatch(pipeline_name), "otaudit would answer 400 (not retried)"


def test_audit_exporter_queue_is_persistent(config: dict[str, Any]) -> None:
    _, settings = audit_exporter(config)
    queue = settings["sending_queue"]
    assert queue["enabled"] is True
    storage = queue["storage"]
    assert component_type(storage) == "file_storage"
    assert storage in config["extensions"]
    assert storage in config["service"]["extensions"]
    assert config["extensions"][storage]["directory"].startswith("/")
    assert config["extensions"][storage].get("fsync") is True
    assert queue.get("wait_for_result") is not True, "not supported with a persistent queue"
    assert queue.get("queue_size", 1000) >= 1000


def test_audit_exporter_batches_after_the_queue_within_otaudit_body_limit(
    config: dict[str, Any],
) -> None:
    _, settings = audit_exporter(config)
    batch = settings["sending_queue"]["batch"]
    assert batch["sizer"] == "bytes"
    assert 0 < batch["min_size"] <= batch["max_size"] <= OTAUDIT_MAX_BODY_BYTES // 2


def test_audit_exporter_retries_forever(config: dict[str, Any]) -> None:
    _, settings = audit_exporter(config)
    retry = settings["retry_on_failure"]
    assert retry["enabled"] is True
    assert retry["max_elapsed_time"] in (0, "0", "0s")


@pytest.mark.parametrize("name", DEFAULT_PIPELINES)
def test_default_pipelines_send_everything(config: dict[str, Any], name: str) -> None:
    pipeline = pipelines(config)[name]
    types = [component_type(p) for p in pipeline["processors"]]
    assert types == ["memory_limiter"], "no filter or transform: everything goes through"
    (exporter_id,) = pipeline["exporters"]
    assert component_type(exporter_id) == "otlp_grpc"
    assert exporter_id != audit_exporter(config)[0]


def test_exporters_use_current_component_names(config: dict[str, Any]) -> None:
    types = {component_type(e) for e in config["exporters"]}
    assert types <= {"otlp_http", "otlp_grpc"}, "otlphttp/otlp are deprecated aliases"


def test_no_processor_uses_the_deprecated_include_exclude_form(config: dict[str, Any]) -> None:
    legacy = {"include", "exclude", "match_type"}
    found = [f"{path}.{key}" for path, key, _ in walk(config["processors"]) if key in legacy]
    assert found == []
    for processor_id, settings in config["processors"].items():
        if component_type(processor_id) == "filter":
            assert "spans" not in settings, "legacy span filter: use traces.span conditions"


def insert_empty_value_actions(processors: dict[str, Any]) -> list[str]:
    """Attributes-processor ``insert`` actions whose value is empty (the blog's 'timestamp')."""
    found = []
    for processor_id, settings in processors.items():
        if component_type(processor_id) != "attributes":
            continue
        for action in (settings or {}).get("actions", []):
            computed = "from_attribute" in action or "from_context" in action
            empty = action.get("value") in ("", None)
            if action.get("action") == "insert" and empty and not computed:
                found.append(f"{processor_id}: {action.get('key')}")
    return found


# The processors of the widely copied blog configuration, rebuilt as data for the
# negative checks below (only the shapes that matter here).
BLOG_PROCESSORS: dict[str, Any] = {
    "filter/audit": {
        "spans": {
            "include": {
                "match_type": "regexp",
                "attributes": [{"key": AUDIT_ATTRIBUTE, "value": ".*"}],
            }
        }
    },
    "attributes/audit_metadata": {
        "actions": [
            {"key": STAMP_ATTRIBUTE, "action": "insert", "value": ""},
            {"key": "audit.pipeline", "value": "soc2-audit-trail", "action": "insert"},
        ]
    },
    "batch": {"timeout": "5s", "send_batch_size": 100},
}


def test_no_attributes_insert_of_an_empty_value(config: dict[str, Any]) -> None:
    assert insert_empty_value_actions(config["processors"]) == []
    # The check does catch the blog's "timestamp" action.
    assert insert_empty_value_actions(BLOG_PROCESSORS) == [
        f"attributes/audit_metadata: {STAMP_ATTRIBUTE}"
    ]


def test_legacy_form_check_catches_the_blog_filter() -> None:
    keys = {key for _, key, _ in walk(BLOG_PROCESSORS)}
    assert {"include", "match_type"} <= keys


def test_docs_show_the_config_verbatim() -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.DOTALL)
    config_text = CONFIG_PATH.read_text(encoding="utf-8")
    assert config_text in blocks, "docs/collector.md must contain the full config unchanged"


# --- models of the documented semantics -----------------------------------------------------
#
# MODEL, not the Collector: a span is reduced to its attribute dict. The filter
# processor (OTTL form) drops every item for which a condition is true. The
# deprecated include/match_type form kept the items that matched `include` and dropped
# the rest. otaudit keeps records that carry the audit attribute and counts the rest as
# not_audit. Values of attributes are compared as strings, as the legacy regexp matcher
# did.

SPANS: list[Attrs] = [
    {"audit.action": "role_update", "user.id": "admin-1", "audit.target_user": "u-7"},
    {"http.route": "/healthz"},
    {"audit.action": "config_change", "audit.changed_by": "ops"},
    {"db.system": "postgresql", "db.operation": "SELECT"},
    {"audit.action": 3},  # a non-string value still carries the attribute
]
AUDIT_SPANS = [s for s in SPANS if AUDIT_ATTRIBUTE in s]
OTHER_SPANS = [s for s in SPANS if AUDIT_ATTRIBUTE not in s]

Predicate = Callable[[Attrs], bool]


def filter_processor(items: list[Attrs], conditions: list[Predicate]) -> list[Attrs]:
    """MODEL of the filter processor: an item is DROPPED when any condition is true."""
    return [item for item in items if not any(condition(item) for condition in conditions)]


def legacy_include(items: list[Attrs], key: str, pattern: str) -> list[Attrs]:
    """MODEL of the deprecated ``spans.include`` (regexp): keep matches, drop the rest."""
    return [i for i in items if key in i and re.search(pattern, str(i[key])) is not None]


def blog_selector(item: Attrs) -> bool:
    """The blog's selector: attribute ``audit.action`` matching regexp ``.*``."""
    return AUDIT_ATTRIBUTE in item and re.search(".*", str(item[AUDIT_ATTRIBUTE])) is not None


def ottl_condition(text: str) -> Predicate:
    """MODEL of the one OTTL condition shape used here: ``attributes["k"] == nil``."""
    match = re.fullmatch(r'attributes\["(?P<key>[^"]+)"\] == nil', text)
    assert match, f"unmodelled condition {text!r}"
    key = match["key"]
    return lambda item: key not in item


def otaudit_keeps(items: list[Attrs]) -> list[Attrs]:
    """MODEL of otaudit's selection: records carrying the audit attribute are sealed."""
    return [i for i in items if AUDIT_ATTRIBUTE in i]


def test_model_blog_selector_as_a_drop_condition_removes_exactly_the_audit_spans() -> None:
    # The deprecated include form kept what matched, so the blog's filter kept audit spans
    # on the Collectors that still accept that form ...
    assert legacy_include(SPANS, AUDIT_ATTRIBUTE, ".*") == AUDIT_SPANS
    # ... but the current filter processor has no "include": every condition says what to
    # DROP. Carried over as "spans with audit.action", the selector drops exactly the
    # audit spans, and the audit pipeline forwards only the others.
    forwarded = filter_processor(SPANS, [blog_selector])
    assert forwarded == OTHER_SPANS
    # otaudit then counts all of them as not_audit: nothing reaches the ledger, and no
    # error is raised anywhere.
    assert otaudit_keeps(forwarded) == []


def test_model_our_condition_keeps_exactly_the_audit_spans(config: dict[str, Any]) -> None:
    for name, (signal, context) in AUDIT_PIPELINES.items():
        (filter_id,) = [p for p in pipelines(config)[name]["processors"] if p.startswith("filter")]
        conditions = [ottl_condition(c) for c in config["processors"][filter_id][signal][context]]
        forwarded = filter_processor(SPANS, conditions)
        assert forwarded == AUDIT_SPANS
        assert otaudit_keeps(forwarded) == AUDIT_SPANS, "otaudit seals everything it is sent"


def attributes_insert(attrs: Attrs, key: str, value: Any) -> Attrs:
    """MODEL of the attributes processor's ``insert``: add the literal value if absent."""
    return attrs if key in attrs else {**attrs, key: value}


def ottl_set(attrs: Attrs, key: str, value: Any) -> Attrs:
    """MODEL of OTTL ``set``: write the value, replacing any present."""
    return {**attrs, key: value}


def test_model_insert_of_an_empty_value_records_no_time() -> None:
    stamped = attributes_insert(dict(AUDIT_SPANS[0]), STAMP_ATTRIBUTE, "")
    assert stamped[STAMP_ATTRIBUTE] == "", "the attribute says 'received at' but holds nothing"
    # insert never overwrites, so a value the sender made up survives unchanged.
    forged = {**AUDIT_SPANS[0], STAMP_ATTRIBUTE: "1999-01-01T00:00:00Z"}
    assert attributes_insert(forged, STAMP_ATTRIBUTE, "")[STAMP_ATTRIBUTE] == (
        "1999-01-01T00:00:00Z"
    )
    # set replaces it with the Collector's time.
    now = "2026-03-01T12:00:00.123456789+00:00"
    assert ottl_set(forged, STAMP_ATTRIBUTE, now)[STAMP_ATTRIBUTE] == now
