"""Calico's label selector language (cni_calico.model.selector)."""

from __future__ import annotations

import re

import pytest

from cni_calico.model.selector import SelectorError, matches, parse

EMPTY: dict[str, str] = {}
WEB = {"role": "web", "zone": "us-east-1a", "calico/k8s_ns": "prod"}
DB = {"role": "db", "zone": "eu-west-2b", "tier": "backend"}

# (selector, labels, expected)
CASES = [
    # all() / global() / empty
    ("all()", EMPTY, True),
    ("all()", WEB, True),
    ("global()", EMPTY, True),
    ("global()", DB, True),
    ("", EMPTY, True),
    ("   ", WEB, True),
    (None, WEB, True),
    ("all ( )", WEB, True),
    # has / !has
    ("has(role)", WEB, True),
    ("has(role)", EMPTY, False),
    ("has(tier)", WEB, False),
    ("has( tier )", DB, True),
    ("has(calico/k8s_ns)", WEB, True),
    ("!has(tier)", WEB, True),
    ("!has(tier)", DB, False),
    ("! has(tier)", EMPTY, True),
    # ==
    ("role == 'web'", WEB, True),
    ("role == 'web'", DB, False),
    ("role == 'web'", EMPTY, False),
    ('role == "db"', DB, True),
    ("role=='web'", WEB, True),
    ("role == ''", {"role": ""}, True),
    ("role == ''", EMPTY, False),
    ("calico/k8s_ns == 'prod'", WEB, True),
    ("role == 'Web'", WEB, False),  # case sensitive
    # != (matches when the label is absent, as in Calico)
    ("role != 'web'", WEB, False),
    ("role != 'web'", DB, True),
    ("role != 'web'", EMPTY, True),
    ('role!="db"', WEB, True),
    # in / not in
    ("role in {'web', 'db'}", WEB, True),
    ("role in {'web', 'db'}", DB, True),
    ("role in {'api'}", WEB, False),
    ("role in {'web'}", EMPTY, False),
    ("role in {}", WEB, False),
    ('role in {"web","api"}', WEB, True),
    ("role in {'web', \"db\"}", DB, True),
    ("role not in {'web', 'db'}", WEB, False),
    ("role not in {'api'}", WEB, True),
    ("role not in {'api'}", EMPTY, True),  # absent label is not in any set
    ("role not in {}", DB, True),
    # contains / starts with / ends with (need the label)
    ("zone contains 'east'", WEB, True),
    ("zone contains 'east'", DB, False),
    ("zone contains 'east'", EMPTY, False),
    ("zone contains ''", DB, True),
    ("zone starts with 'us-'", WEB, True),
    ("zone starts with 'us-'", DB, False),
    ("zone starts with 'us-'", EMPTY, False),
    ('zone starts with "eu"', DB, True),
    ("zone ends with '1a'", WEB, True),
    ("zone ends with '1a'", DB, False),
    ("zone ends with '1a'", EMPTY, False),
    ('zone ends with "2b"', DB, True),
    # && / || / !
    ("role == 'web' && has(zone)", WEB, True),
    ("role == 'web' && has(tier)", WEB, False),
    ("role == 'db' && has(tier) && zone starts with 'eu'", DB, True),
    ("role == 'db' && has(tier) && zone starts with 'us'", DB, False),
    ("role == 'web' || role == 'db'", DB, True),
    ("role == 'api' || role == 'cache'", DB, False),
    ("role == 'api' || role == 'cache' || has(tier)", DB, True),
    ("!(role == 'web')", WEB, False),
    ("!(role == 'web')", DB, True),
    ("!role == 'web'", WEB, False),  # ! binds to the comparison
    ("!!has(role)", WEB, True),
    ("!all()", WEB, False),
    # precedence: && binds tighter than ||
    ("has(tier) || role == 'web' && has(nothing)", DB, True),     # has(tier) || (False)
    ("has(tier) || role == 'web' && has(nothing)", WEB, False),
    ("role == 'web' && has(nothing) || has(tier)", DB, True),     # (False) || has(tier)
    ("role == 'web' && has(nothing) || has(zone)", WEB, True),
    # parentheses override precedence
    ("(has(tier) || role == 'web') && has(nothing)", DB, False),
    ("role == 'web' && (has(nothing) || has(zone))", WEB, True),
    ("role == 'web' && (has(nothing) || has(tier))", WEB, False),
    ("((role == 'db'))", DB, True),
    ("!(has(tier) || has(role))", EMPTY, True),
    ("!(has(tier) || has(role))", WEB, False),
    # quoting: the other quote character is an ordinary character inside a string
    ("name == \"it's\"", {"name": "it's"}, True),
    ("name == 'say \"hi\"'", {"name": 'say "hi"'}, True),
    ("name == 'a && b || (c)'", {"name": "a && b || (c)"}, True),
    ("name == 'a b'", {"name": "a b"}, True),
    # words that are operators elsewhere can be label keys
    ("all == 'x'", {"all": "x"}, True),
    ("has == 'x'", {"has": "x"}, True),
    ("in == 'x'", {"in": "x"}, True),
    ("kubernetes.io/hostname == 'node-1'", {"kubernetes.io/hostname": "node-1"}, True),
]


@pytest.mark.parametrize("text, labels, expected", CASES)
def test_selector_matches(text, labels, expected):
    assert matches(text, labels) is expected
    assert parse(text)(labels) is expected


def test_a_parsed_selector_is_reusable():
    pred = parse("role in {'web', 'db'} && !has(tier)")
    assert [pred(labels) for labels in (WEB, DB, EMPTY, {"role": "web"})] == [True, False, False, True]


# (selector, position the error names)
MALFORMED = [
    ("role == web", 8),            # unquoted value
    ("role ==", 7),                # missing value
    ("role", 4),                   # key without operator
    ("role = 'web'", 5),           # single '='
    ("role == 'web", 8),           # unterminated string
    ('role == "web', 8),
    ("has(role", 8),               # missing ')'
    ("has()", 4),                  # missing key
    ("all(", 4),
    ("(role == 'web'", 14),        # missing ')'
    ("role == 'web')", 13),        # stray ')'
    ("role == 'web' role == 'db'", 14),  # missing && / ||
    ("role == 'web' &&", 16),      # dangling &&
    ("|| role == 'web'", 0),       # leading ||
    ("role == 'web' & has(x)", 14),  # single '&'
    ("role == 'web' | has(x)", 14),  # single '|'
    ("role in {'web'", 14),        # unterminated set
    ("role in {'web' 'db'}", 15),  # missing comma
    ("role in {'web',}", 15),      # trailing comma
    ("role in 'web'", 8),          # set without braces
    ("role not {'web'}", 9),       # 'not' without 'in'
    ("zone starts 'us'", 12),      # 'starts' without 'with'
    ("zone ends 'us'", 10),
    ("zone contains us", 14),
    ("!", 1),
    ("()", 1),
    ("role == 'web' $", 14),       # unknown character
    ("@role == 'x'", 0),
]


@pytest.mark.parametrize("text, position", MALFORMED)
def test_malformed_selectors_raise_selector_error_with_position(text, position):
    with pytest.raises(SelectorError) as info:
        parse(text)
    message = str(info.value)
    found = re.search(r"at position (\d+)", message)
    assert found, message
    assert int(found.group(1)) == position, message


def test_selector_error_is_a_value_error():
    with pytest.raises(ValueError):
        matches("role ==", WEB)
