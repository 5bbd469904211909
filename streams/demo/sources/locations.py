"""Free-text profile locations -> ISO 3166-1 alpha-2 country codes (:func:`parse_location`).

Used for the ``country`` (and ``locale``) of Stack Exchange signups
(:mod:`streams.demo.sources.stackexchange`, which re-exports :func:`parse_location`). The tables
below list countries by their English and local names and common aliases, the US states and the
Canadian provinces.
"""
from __future__ import annotations

__all__ = ["parse_location"]

# "CODE:name|alias|...;" -- ISO 3166-1 alpha-2 codes; names in English and in the local language.
_COUNTRIES = """
DZ:Algeria; AR:Argentina; AM:Armenia; AU:Australia; AT:Austria|Österreich; AZ:Azerbaijan;
BH:Bahrain; BD:Bangladesh; BY:Belarus; BE:Belgium|België|Belgique; BO:Bolivia;
BA:Bosnia and Herzegovina; BW:Botswana; BR:Brazil|Brasil; BG:Bulgaria|България; CM:Cameroon;
CA:Canada; CL:Chile; CN:China|中国; CO:Colombia; CR:Costa Rica; HR:Croatia|Hrvatska; CU:Cuba;
CY:Cyprus; CZ:Czech Republic|Czechia|Česko|Česká republika; DK:Denmark|Danmark;
DO:Dominican Republic; EC:Ecuador; EG:Egypt; EE:Estonia|Eesti; ET:Ethiopia;
FI:Finland|Suomi; FR:France; GE:Georgia; DE:Germany|Deutschland; GH:Ghana;
GR:Greece|Ελλάδα; GT:Guatemala; HK:Hong Kong; HU:Hungary|Magyarország; IS:Iceland;
IN:India|Bharat; ID:Indonesia; IR:Iran; IQ:Iraq; IE:Ireland; IL:Israel; IT:Italy|Italia;
JM:Jamaica; JP:Japan|日本; JO:Jordan; KZ:Kazakhstan; KE:Kenya;
KR:South Korea|Korea|Republic of Korea|대한민국; KW:Kuwait; LV:Latvia; LB:Lebanon;
LT:Lithuania|Republic of Lithuania|Lietuva; LU:Luxembourg; MY:Malaysia; MT:Malta;
MX:Mexico|México; MA:Morocco; NP:Nepal; NL:Netherlands|The Netherlands|Holland|Nederland;
NZ:New Zealand; NG:Nigeria; MK:North Macedonia|Macedonia; NO:Norway|Norge; OM:Oman;
PK:Pakistan; PS:Palestine; PA:Panama; PY:Paraguay; PE:Peru; PH:Philippines;
PL:Poland|Polska; PT:Portugal; PR:Puerto Rico; QA:Qatar; RO:Romania|România;
RU:Russia|Russian Federation|Россия; SA:Saudi Arabia; RS:Serbia|Srbija; SG:Singapore;
SK:Slovakia|Slovensko; SI:Slovenia|Slovenija; ZA:South Africa; ES:Spain|España;
LK:Sri Lanka; SE:Sweden|Sverige; CH:Switzerland|Schweiz|Suisse|Svizzera; TW:Taiwan;
TZ:Tanzania; TH:Thailand; TT:Trinidad and Tobago; TN:Tunisia; TR:Turkey|Türkiye;
UG:Uganda; UA:Ukraine|Україна; AE:United Arab Emirates|UAE;
GB:United Kingdom|UK|England|Scotland|Wales|Northern Ireland|Great Britain|GB;
US:United States|USA|US|United States of America|États-Unis; UY:Uruguay; UZ:Uzbekistan;
VE:Venezuela; VN:Vietnam|Viet Nam|Việt Nam; ZM:Zambia; ZW:Zimbabwe
"""
_US_STATES = """
AL:Alabama; AK:Alaska; AZ:Arizona; AR:Arkansas; CA:California; CO:Colorado; CT:Connecticut;
DE:Delaware; DC:District of Columbia; FL:Florida; GA:; HI:Hawaii; ID:Idaho; IL:Illinois;
IN:Indiana; IA:Iowa; KS:Kansas; KY:Kentucky; LA:Louisiana; ME:Maine; MD:Maryland;
MA:Massachusetts; MI:Michigan; MN:Minnesota; MS:Mississippi; MO:Missouri; MT:Montana;
NE:Nebraska; NV:Nevada; NH:New Hampshire; NJ:New Jersey; NM:New Mexico; NY:New York;
NC:North Carolina; ND:North Dakota; OH:Ohio; OK:Oklahoma; OR:Oregon; PA:Pennsylvania;
RI:Rhode Island; SC:South Carolina; SD:South Dakota; TN:Tennessee; TX:Texas; UT:Utah;
VT:Vermont; VA:Virginia; WA:Washington; WV:West Virginia; WI:Wisconsin; WY:Wyoming
"""
# Georgia is both a US state and a country; a bare "Georgia" is read as the country (GA: no name).
_CA_PROVINCES = """
AB:Alberta; BC:British Columbia; MB:Manitoba; NB:New Brunswick; NL:Newfoundland and Labrador;
NS:Nova Scotia; ON:Ontario; PE:Prince Edward Island; QC:Quebec|Québec; SK:Saskatchewan
"""


def _table(spec: str) -> tuple[dict[str, str], set[str]]:
    """Parse ``"CODE:name|alias; ..."`` -> ({lowercase name: CODE}, {CODE, ...})."""
    names: dict[str, str] = {}
    codes: set[str] = set()
    for entry in spec.split(";"):
        code, _, aliases = entry.strip().partition(":")
        codes.add(code)
        names.update((alias.strip().lower(), code) for alias in aliases.split("|") if alias)
    return names, codes


_COUNTRY_BY_NAME, _ = _table(_COUNTRIES)
_US_BY_NAME, _US_CODES = _table(_US_STATES)
_CA_BY_NAME, _CA_CODES = _table(_CA_PROVINCES)


def parse_location(location: str | None) -> str | None:
    """Free-text profile Location -> ISO 3166-1 alpha-2 country code, or None.

    Looks at the last comma-separated part: a country name or common alias ("UK", "USA",
    "Deutschland"), a US state name, or, when the location has several parts, a US state or
    Canadian province abbreviation ("Seattle, WA", "Toronto, ON"). City names alone ("London"),
    continents and jokes ("Earth") give None.
    """
    if not location:
        return None
    parts = [part.strip() for part in location.split(",") if part.strip()]
    if not parts:
        return None
    last = parts[-1]
    key = last.replace(".", "").lower()  # "U.S." -> "us"
    if key in _COUNTRY_BY_NAME:
        return _COUNTRY_BY_NAME[key]
    if key in _US_BY_NAME:
        return "US"
    if key in _CA_BY_NAME:
        return "CA"
    if len(parts) > 1 and len(last) == 2 and last.isupper():
        if last in _US_CODES:
            return "US"
        if last in _CA_CODES:
            return "CA"
    return None
