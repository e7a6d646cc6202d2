"""Kubernetes and KServe rules for what servopt writes into ``kserve.yaml``: names, quantities, storage URIs.

Every check raises :class:`servopt.ValidationError` with one line naming the key (``where``) and the value, so
the CLI exits with code 2 before anything is written. The rules restated here:

* **names**: ``metadata.name`` of an ``InferenceService`` is an RFC 1035 label (KServe's webhook: lower-case
  letters, digits and ``-``, starting with a letter, ending with a letter or digit); a namespace is a DNS-1123
  label. Both are at most 63 characters, and so is every label KServe and Knative derive from a name: the
  predictor's host label ``<name>-predictor-<namespace>`` and its first Knative revision
  ``<name>-predictor-00001`` (an ``InferenceGraph``: ``<name>-<namespace>`` and ``<name>-00001``).
  :func:`fit_name` shortens a name that would not fit, with a stable hash suffix.
* **quantities**: Kubernetes' quantity syntax (``8Gi``, ``512Mi``, ``2``, ``500m``, ``1.5``, ``1e9``);
  ``8GB`` is refused with the suggestion ``8G`` or ``8Gi``, memory in milli-bytes (``512m``) with ``512Mi``.
* **storage URIs**: the schemes KServe's storage initializer downloads from (see :data:`STORAGE_SCHEMES`).
"""

from __future__ import annotations

import hashlib
import re
from decimal import ROUND_CEILING, Decimal
from typing import Any

from servopt.exceptions import ValidationError

__all__ = [
    "MAX_LABEL",
    "STORAGE_SCHEMES",
    "check_dns_label",
    "check_label_value",
    "check_quantity",
    "check_storage_uri",
    "dns_name",
    "fit_name",
    "format_cpu",
    "format_memory",
    "label_value",
    "quantity_value",
    "subpaths_allowed",
]

#: the longest DNS label (RFC 1123 §2.1), label value and object name servopt writes
MAX_LABEL = 63

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_BYTES_TYPO = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtTpPeE])(i?)[bB]\s*$")
_SUFFIX = {"": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": 10 ** 3, "M": 10 ** 6,
           "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30,
           "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}

#: storage URI schemes KServe's storage initializer (and its webhook) accept for ``storageUri``; ``https://``
#: covers Azure Blob/File URLs (``https://<account>.blob.core.windows.net/...``) and plain archives
STORAGE_SCHEMES = ("gs", "s3", "pvc", "hdfs", "webhdfs", "http", "https", "hf", "oci")
#: schemes naming a folder: a sub-folder per repository can be appended (``gs://b/repo/T4``)
_FOLDER_SCHEMES = ("gs", "s3", "pvc", "hdfs", "webhdfs")
_AZURE = re.compile(r"^https://[^/]+\.(blob|file)\.core\.windows\.net/.+")
_ARCHIVE = (".zip", ".tar", ".tar.gz", ".tgz")
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>\S*)$")


def _hash(text: str, length: int = 6) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def dns_name(*parts: str) -> str:
    """An RFC 1035 label made from ``parts``: lower case, digits and ``-``, starting with a letter (not cut).

    >>> dns_name("EffNet_B0", "A100-80GB")
    'effnet-b0-a100-80gb'
    >>> dns_name("3d", "T4")
    'm-3d-t4'
    """
    text = "-".join(p for p in parts if p)
    text = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    text = re.sub(r"-{2,}", "-", text)
    if not text or not text[0].isalpha():
        text = "m-" + text if text else "m"
    return text


def fit_name(name: str, limit: int, original: str | None = None) -> str:
    """``name`` if it has at most ``limit`` characters, else its head plus ``-`` and a 6-digit hash of
    ``original`` (default ``name``): stable across runs, distinct for distinct originals.

    >>> fit_name("resnet50-t4", 63)
    'resnet50-t4'
    >>> fit_name("a-very-long-model-name-for-a-test", 20)
    'a-very-long-m-9c2e1d'
    """
    if len(name) <= limit:
        return name
    head = name[:max(1, limit - 7)].rstrip("-")
    return f"{head}-{_hash(original if original is not None else name)}"


def check_dns_label(value: Any, where: str, *, rfc1035: bool = False) -> str:
    """Refuse a value that is not a DNS-1123 label (``rfc1035``: also starting with a letter), <= 63 chars."""
    pattern, what = ((_DNS1035_LABEL, "an RFC 1035 label: lower-case letters, digits and '-', starting with a "
                      "letter and ending with a letter or digit") if rfc1035 else
                     (_DNS1123_LABEL, "a DNS-1123 label: lower-case letters, digits and '-', starting and ending "
                      "with a letter or digit"))
    if not isinstance(value, str) or not pattern.match(value) or len(value) > MAX_LABEL:
        hint = ""
        if isinstance(value, str) and value:
            fixed = dns_name(value) if rfc1035 else re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-",
                                                                                  value.lower())).strip("-")
            if fixed and fixed != value and len(fixed) <= MAX_LABEL:
                hint = f"; try {fixed!r}"
        size = f", at most {MAX_LABEL} characters" + (f" (it has {len(value)})" if isinstance(value, str)
                                                      and len(value) > MAX_LABEL else "")
        raise ValidationError(f"{where}: {value!r} is not {what}{size}{hint}")
    return value


def check_label_value(value: Any, where: str) -> str:
    """Refuse a value Kubernetes does not take as a label value (node selector values included)."""
    if not isinstance(value, str) or len(value) > MAX_LABEL or not _LABEL_VALUE.match(value):
        raise ValidationError(f"{where}: {value!r} is not a Kubernetes label value (at most {MAX_LABEL} "
                              "letters, digits, '-', '_' or '.', starting and ending with a letter or digit)")
    return value


def label_value(text: str) -> str:
    """``text`` as a label value: kept when valid, else cleaned and (when too long) cut with a hash suffix.

    >>> label_value("A100-80GB"), label_value("A100 80GB/sxm")
    ('A100-80GB', 'A100_80GB_sxm')
    """
    if len(text) <= MAX_LABEL and _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")
    if len(cleaned) > MAX_LABEL:
        cleaned = cleaned[:MAX_LABEL - 7].rstrip("_.-") + "-" + _hash(text)
    return cleaned or _hash(text)


# ---------------------------------------------------------------------------------------------------------------
# quantities


def quantity_value(text: str) -> Decimal:
    """The number a valid quantity stands for (bytes for memory, cores for CPU).

    >>> quantity_value("8Gi"), quantity_value("500m"), quantity_value("1e3")
    (Decimal('8589934592'), Decimal('0.500'), Decimal('1E+3'))
    """
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    num, suffix = Decimal(match["num"]), match["suffix"] or ""
    if suffix[:1] in ("e", "E"):
        return num.scaleb(int(suffix[1:]))
    return num * _SUFFIX[suffix]


def check_quantity(value: Any, where: str, *, memory: bool) -> str:
    """Refuse a value that is not a positive Kubernetes quantity (``memory``: bytes; else CPU cores).

    >>> check_quantity("8Gi", "memory", memory=True)
    '8Gi'
    >>> check_quantity("8GB", "triton.kserve.memory", memory=True)
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: triton.kserve.memory: '8GB' is not a Kubernetes quantity; write '8G' (10^9 bytes) or '8Gi' (2^30 bytes)
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError(f"{where}: expected a Kubernetes quantity such as "
                              f"{'8Gi or 512Mi' if memory else '2 or 500m'}, got {value!r}")
    text = str(value)
    if _QUANTITY.match(text) is None:
        typo = _BYTES_TYPO.match(text)
        if typo is not None:
            num, unit = typo[1], typo[2].upper() if typo[2] not in ("k", "K") else "k"
            binary = "Ki" if unit == "k" else unit + "i"
            power = {"k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}[unit]
            raise ValidationError(f"{where}: {text!r} is not a Kubernetes quantity; write '{num}{unit}' "
                                  f"(10^{power} bytes) or '{num}{binary}' (2^{power // 3 * 10} bytes)")
        example = "8Gi, 512Mi or 8G" if memory else "2, 0.5 or 500m"
        raise ValidationError(f"{where}: {text!r} is not a Kubernetes quantity (a number with an optional suffix "
                              f"Ki Mi Gi Ti Pi Ei, m k M G T P E or an exponent, e.g. {example})")
    amount = quantity_value(text)
    if amount <= 0:
        raise ValidationError(f"{where}: {text!r} must be positive")
    if memory and text.endswith("m"):
        raise ValidationError(f"{where}: {text!r} means {text[:-1]} milli-bytes; write '{text[:-1]}Mi' "
                              f"(mebibytes) or '{text[:-1]}M' (megabytes)")
    if memory and amount < 2 ** 20:
        raise ValidationError(f"{where}: {text!r} is {amount} bytes; a Triton server needs far more (e.g. 8Gi)")
    if not memory and amount != (amount * 1000).to_integral_value() / 1000:
        raise ValidationError(f"{where}: {text!r} is finer than Kubernetes' CPU precision of 1m (0.001 cores)")
    return text


def format_cpu(cores: Decimal | float) -> str:
    """Cores as a quantity: an integer, else millicores rounded up (``2``, ``500m``)."""
    value = Decimal(str(cores))
    if value == value.to_integral_value():
        return str(int(value))
    return f"{int((value * 1000).to_integral_value(rounding=ROUND_CEILING))}m"


def format_memory(amount: Decimal | int) -> str:
    """Bytes as a quantity in the largest binary unit that divides them (``8Gi``, ``1536Mi``)."""
    value = int(Decimal(amount).to_integral_value(rounding=ROUND_CEILING))
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if value % _SUFFIX[suffix] == 0:
            return f"{value // _SUFFIX[suffix]}{suffix}"
    return str(value)


# ---------------------------------------------------------------------------------------------------------------
# storage URIs


def check_storage_uri(uri: Any, where: str = "--storage-uri") -> str:
    """Accept a URI KServe's storage initializer downloads from; return it without a trailing ``/``.

    >>> check_storage_uri("gs://bucket/effnet/")
    'gs://bucket/effnet'
    >>> check_storage_uri("ftp://host/repo")
    Traceback (most recent call last):
    ...
    servopt.exceptions.ValidationError: --storage-uri: scheme 'ftp' of 'ftp://host/repo' is not one KServe's storage initializer downloads from (gs, s3, pvc, hdfs, webhdfs, http, https, hf, oci; Azure as https://<account>.blob.core.windows.net/...)
    """
    match = _URI.match(uri) if isinstance(uri, str) else None
    if match is None:
        raise ValidationError(
            f"{where}: expected a storage URI such as gs://bucket/repo, s3://bucket/repo or pvc://claim/repo "
            f"(where the written repository will be uploaded), got {uri!r}")
    scheme, rest = match["scheme"], match["rest"].rstrip("/")
    if scheme not in STORAGE_SCHEMES:
        raise ValidationError(
            f"{where}: scheme {scheme!r} of {uri!r} is not one KServe's storage initializer downloads from "
            f"({', '.join(STORAGE_SCHEMES)}; Azure as https://<account>.blob.core.windows.net/...)")
    host = rest.split("/", 1)[0]
    if not host:
        raise ValidationError(f"{where}: {uri!r} names no {'claim' if scheme == 'pvc' else 'bucket or host'} "
                              f"after {scheme}://")
    if scheme == "pvc" and not _DNS1123_LABEL.match(host.split(":")[-1]):
        raise ValidationError(f"{where}: {uri!r}: claim {host!r} is not a PersistentVolumeClaim name "
                              "(lower-case letters, digits and '-')")
    if scheme in ("http", "https") and not _AZURE.match(uri):
        path = rest.split("/", 1)[1] if "/" in rest else ""
        if not path.endswith(_ARCHIVE):
            raise ValidationError(
                f"{where}: {uri!r}: KServe downloads an http(s) URI as one file, so it must name an archive of "
                f"the repository ({', '.join(_ARCHIVE)}); for a folder use gs://, s3://, pvc:// or Azure storage")
    return f"{scheme}://{rest}"


def subpaths_allowed(uri: str) -> bool:
    """Whether ``uri`` names a folder, so that ``uri/<repository>`` names a sub-folder (gs, s3, pvc, ...)."""
    return uri.split("://", 1)[0] in _FOLDER_SCHEMES or _AZURE.match(uri) is not None
