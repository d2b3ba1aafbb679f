"""CDS Hooks 2.0 over real HTTP: discovery, and order-sign with a FHIR R4 Bundle built with
fhir.resources (draft MedicationRequest and ServiceRequest, prefetched Patient, Condition and
MedicationStatement). One card per draft order; the same Bundle through /v1/evaluate answers
what the mapped case answers on the command line."""

from __future__ import annotations

import json

import httpx
import pytest

from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest

from mtus_engine.interfaces.cli import main as cli
from mtus_engine.interfaces.service.fhir import bundle_case
from mtus_engine.interfaces.service.launch import ServerProcess


def _bundle(resources, type_="collection", id_=None) -> Bundle:
    return Bundle(type=type_, id=id_, entry=[BundleEntry(resource=r) for r in resources])


def draft_orders() -> Bundle:
    med = MedicationRequest(
        id="mr1", status="draft", intent="order", subject={"reference": "Patient/p1"},
        authoredOn="2014-06-20",
        medicationCodeableConcept={"text": "Cyclobenzaprine 7.5 mg tablet",
                                   "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                               "code": "828348", "display": "cyclobenzaprine 7.5 MG Oral Tablet"}]},
        dosageInstruction=[{"text": "1 tablet three times a day",
                            "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}],
        dispenseRequest={"quantity": {"value": 60, "unit": "tablet"}, "numberOfRepeatsAllowed": 3})
    chiro = ServiceRequest(
        id="sr1", status="draft", intent="order", subject={"reference": "Patient/p1"},
        authoredOn="2014-06-20", code={"text": "Chiropractic manipulation"},
        quantityQuantity={"value": 6}, bodySite=[{"text": "lumbar spine"}])
    return _bundle([med, chiro])


def prefetch() -> dict:
    patient = Patient(id="p1", gender="male", birthDate="1962-03-01")
    conditions = _bundle([Condition(subject={"reference": "Patient/p1"}, code={"text": "low back pain"},
                                    onsetDateTime="2013-01-30"),
                          Condition(subject={"reference": "Patient/p1"}, code={"text": "muscle spasm"})],
                         type_="searchset")
    meds = _bundle([MedicationStatement(status="active", subject={"reference": "Patient/p1"},
                                        medicationCodeableConcept={"text": "cyclobenzaprine"},
                                        effectivePeriod={"start": "2014-03-01"}),
                    MedicationStatement(status="active", subject={"reference": "Patient/p1"},
                                        medicationCodeableConcept={"text": "tramadol"},
                                        effectivePeriod={"start": "2014-01-10"})],
                   type_="searchset")
    return {"patient": _json(patient), "conditions": _json(conditions), "medications": _json(meds)}


def _json(res) -> dict:
    return json.loads(res.model_dump_json(exclude_none=True))


def hook_request() -> dict:
    return {"hook": "order-sign", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/r1", "patientId": "p1", "draftOrders": _json(draft_orders())},
            "prefetch": prefetch()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cds")
    with ServerProcess(["--db", str(tmp / "d.db")], log_path=tmp / "server.log") as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            srv.client = client
            yield srv


def test_discovery(server):
    r = server.client.get("/cds-services")
    assert r.status_code == 200
    (svc,) = r.json()["services"]
    assert svc["id"] == "mtus-order-sign" and svc["hook"] == "order-sign"
    assert set(svc["prefetch"]) == {"patient", "conditions", "medications"}


def test_order_sign_one_card_per_draft_order(server):
    r = server.client.post("/cds-services/mtus-order-sign", json=hook_request())
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert len(cards) == 2
    med, chiro = cards
    assert med["summary"].startswith("non-certify: Cyclobenzaprine 7.5 mg")
    assert med["indicator"] == "critical"
    assert "Cyclobenzaprine (Flexeril), pages 41-42" in med["source"]["label"]
    assert "not medically necessary" in med["detail"] and "**non-certify**" in med["detail"]
    for card in cards:
        assert len(card["summary"]) <= 140 and card["uuid"]
        decision = card["summary"].split(":", 1)[0]
        assert card["indicator"] == {"certify": "info", "modify": "warning", "non-certify": "critical",
                                     "no-rule": "info"}[decision]
        assert card["source"]["label"]


def test_mapping_reads_dispense_request_sessions_site_prior_use_and_patient():
    body = hook_request()
    from mtus_engine.interfaces.service.fhir import hook_case
    case = hook_case(body)
    assert case.patient.age == 52 and case.patient.sex == "male"
    assert str(case.request_date) == "2014-06-20" and str(case.injury_date) == "2013-01-30"
    assert case.diagnoses == ["low back pain", "muscle spasm"]
    assert [(m.name, str(m.since)) for m in case.medications] == [("cyclobenzaprine", "2014-03-01"),
                                                                  ("tramadol", "2014-01-10")]
    med, chiro = case.requests
    assert (med.quantity, med.refills, med.units_per_day) == (60, 3, 3.0)
    assert chiro.sessions == 6 and chiro.body_region == ["lumbar"]


def test_fhir_bundle_through_evaluate_is_the_cli_json(server, tmp_path):
    everything = _bundle([*[e.resource for e in draft_orders().entry],
                          Patient.model_validate(prefetch()["patient"]),
                          *[e.resource for e in Bundle.model_validate(prefetch()["conditions"]).entry],
                          *[e.resource for e in Bundle.model_validate(prefetch()["medications"]).entry]],
                         id_="b1")
    raw = everything.model_dump_json(exclude_none=True).encode()
    r = server.client.post("/v1/evaluate", content=raw, headers={"content-type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    case = bundle_case(raw)
    assert case.id == "fhir-b1"
    path = tmp_path / "fhir-case.json"
    path.write_text(json.dumps(case.model_dump(mode="json", exclude_none=True)))
    res = CliRunner().invoke(cli, ["evaluate", str(path), "--format", "json"])
    assert res.exit_code == 0 and r.text == res.stdout


def test_bad_fhir_is_422_and_the_server_goes_on(server):
    bad = {"resourceType": "Bundle", "type": "collection",
           "entry": [{"resource": {"resourceType": "MedicationRequest", "status": "draft"}}]}  # no intent/subject
    r = server.client.post("/v1/evaluate", content=json.dumps(bad), headers={"content-type": "application/fhir+json"})
    assert r.status_code == 422 and "invalid FHIR" in r.json()["error"]
    r = server.client.post("/cds-services/mtus-order-sign", json={"hook": "order-sign", "context": {}})
    assert r.status_code == 422 and "draftOrders" in r.json()["error"]
    r = server.client.post("/cds-services/mtus-order-sign", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert r.status_code == 422
    empty = {"resourceType": "Bundle", "type": "collection", "entry": []}
    r = server.client.post("/v1/evaluate", content=json.dumps(empty), headers={"content-type": "application/fhir+json"})
    assert r.status_code == 422 and "no MedicationRequest or ServiceRequest" in r.json()["error"]
    assert server.client.get("/healthz").status_code == 200



