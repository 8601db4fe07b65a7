"""Ties at the chain level: fixed-sequence testing rejects H0 at ``p <= level``, in both walks.

``certificate.fixed_sequence`` certifies a candidate at ``p <= level`` and ``certificate.run_chains``
stops after a candidate with ``p > level``: flipping either comparison makes the two walks disagree
at the tie. Example: confidence 0.25 gives the chain level (1 - 0.25) / 3 = 0.25, and 0 of 2 answers
changed at tau = 0.5 has p = P[Bin(2, 0.5) <= 0] = 0.25 exactly.
"""

from __future__ import annotations

from skipit.empirical.certificate import binomial_p_value, fixed_sequence, run_chains
from skipit.empirical.settings import CertifySettings

TIE = CertifySettings(confidence=0.25, tolerance=0.5)


def test_the_example_is_an_exact_tie():
    assert TIE.chain_level() == 0.25 and binomial_p_value(0, 2, 0.5) == TIE.chain_level()


def test_a_p_value_exactly_at_the_chain_level_is_rejected_and_the_chain_goes_on():
    """At the tie the candidate is certified (``fixed_sequence``) and the walk measures the next one
    (``run_chains``); the next, with p = 1 > level, stops the chain and is not certified."""
    chain = [{"mode": "late-entry", "layer": 2}, {"mode": "late-entry", "layer": 3}]
    measured = []

    def changed(config):
        measured.append(config["layer"])
        return 0 if config["layer"] == 2 else 2

    walked = run_chains({"late-entry": chain}, 2, changed, lambda config: 0.5, TIE)["late-entry"]
    assert measured == [2, 3]  # p == level does not stop the chain
    tested = fixed_sequence(walked, TIE.tolerance, TIE.chain_level())
    assert [r["certified"] for r in tested] == [True, False]
    assert tested[0]["p_value"] == TIE.chain_level()


def test_a_p_value_above_the_chain_level_stops_the_chain():
    """The other side: 1 of 2 changed has p = 0.75 > 0.25; the chain stops there, uncertified."""
    chain = [{"mode": "early-exit", "layer": 3}, {"mode": "early-exit", "layer": 2}]
    walked = run_chains({"early-exit": chain}, 2, lambda config: 1, lambda config: 0.5, TIE)["early-exit"]
    assert [r["layer"] for r in walked] == [3]
    assert [r["certified"] for r in fixed_sequence(walked, TIE.tolerance, TIE.chain_level())] == [False]


def test_the_verification_chain_certifies_a_p_value_exactly_at_its_level_and_goes_on():
    """The walk ``skipit certify`` runs (:func:`skipit.empirical.verification.run_chain`), at the
    same tie: one question per image makes the test the exact binomial, 0 of 2 changed at tau 0.5
    has p = 0.25 = level, so the candidate is certified and the next one is measured; the next,
    with 2 of 2 changed (p = 1), is not certified and ends the chain before a third."""
    from skipit.empirical.verification import run_chain

    chain = [{"mode": "freeze", "layers": [1]}, {"mode": "freeze", "layers": [1, 2]},
             {"mode": "freeze", "layers": [1, 2, 3]}]
    measured = []

    def changed(config):
        measured.append(len(config["layers"]))
        return [False, False] if len(config["layers"]) == 1 else [True, True]

    tested = run_chain(chain, changed, [0, 1], lambda config: 0.5, tolerance=0.5, level=0.25)
    assert measured == [1, 2]
    assert [r["certified"] for r in tested] == [True, False]
    assert tested[0]["p_value"] == 0.25


def test_the_verification_chain_stops_at_a_p_value_above_its_level():
    """1 of 2 changed has p = 0.75 > 0.25: not certified, and nothing after it is measured."""
    from skipit.empirical.verification import run_chain

    chain = [{"mode": "early-exit", "layer": 3}, {"mode": "early-exit", "layer": 2}]
    tested = run_chain(chain, lambda config: [True, False], [0, 1], lambda config: 0.5, tolerance=0.5, level=0.25)
    assert [(r["layer"], r["certified"]) for r in tested] == [(3, False)]
