"""The synthetic requests bench_engine.py and bench_service.py both send: muscle relaxants,
chiropractic and acupuncture (the soak test's load), with a tramadol and a zolpidem item that
no or another family covers. One generator, so the two benchmarks measure the same load."""

from __future__ import annotations

import random

ITEMS = ["Flexeril 7.5 mg #{q}", "Cyclobenzaprine 10mg #{q} refills x {r}", "Soma 350 mg #{q}",
         "Zanaflex 4 mg #{q}", "Robaxin 750 mg #{q}", "Skelaxin 800 mg #{q}", "Baclofen 10 mg #{q}",
         "Tramadol 50 mg #{q}", "Chiropractic {s} sessions lumbar", "Acupuncture {s} sessions cervical",
         "Ambien 10 mg #{q}"]


def synthetic_request(rnd: random.Random) -> dict:
    """One request as case data: an item with a varied quantity, refills or visits, and the
    prior use, functional improvement and prior visits the records may or may not give."""
    item = rnd.choice(ITEMS).format(q=rnd.choice([10, 20, 30, 60, 90]), r=rnd.randint(0, 3),
                                    s=rnd.choice([4, 6, 12]))
    req: dict = {"item": item}
    if rnd.random() < 0.5:
        req["prior_use_weeks"] = rnd.randint(0, 30)
    if rnd.random() < 0.5:
        req["functional_improvement"] = rnd.random() < 0.5
    if "sessions" in item:
        req["prior_sessions"] = rnd.choice([0, 6])
    return req
