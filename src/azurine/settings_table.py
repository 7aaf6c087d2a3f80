"""Every `AZURINE_*` environment variable Azurine reads, with its default and meaning: one table.

Code reads these variables only through `read` (typer options name theirs through `envvar`), which refuse a name
the table lacks, and docs/configuration.md is rendered from the table (`scripts/configuration_doc.py`), so what
the server reads and what it documents cannot part. Parsing stays with the code that uses a value: the table
holds what people are told, in Markdown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import overload


@dataclass(frozen=True)
class Setting:
    env: str  # the environment variable's name
    default: str  # what applies when it is unset, as people are told it
    meaning: str


# the commands that call a server's management API over HTTP(S), sharing the connection options
_MANAGEMENT_COMMANDS = "`azurine account`, `usage`, `rai-policy`, `group` and `role assignment`"

SETTINGS: tuple[Setting, ...] = (
    Setting("AZURINE_DATA_DIR", "`./azurine-data`",
            "the data directory (the SQLite database, files, `service.key`) where `--data-dir` is not given, for "
            "`azurine serve` and the commands that work on the server's database"),
    Setting("AZURINE_DATABASE_URL", "SQLite in the data directory",
            "a SQLAlchemy URL, e.g. `postgresql://user@host/azurine`"),
    Setting("AZURINE_REDIS_URL", "counters in memory",
            "Redis for rate-limit counters shared by replicas, e.g. `redis://host:6379/0`"),
    Setting("AZURINE_DEFAULT_QUOTA", "`1000` units", "a subscription's quota per usage name where none was set"),
    Setting("AZURINE_ACCOUNT_NAME", "`default`", "the name of the default account, at first start"),
    Setting("AZURINE_API_KEY", "random", "key1 of the default account, at first start"),
    Setting("AZURINE_MODELS_DIR", "`$XDG_CACHE_HOME/azurine/models` (`~/.cache/azurine/models`)",
            "where `azurine models install` keeps model files, and the server finds them"),
    Setting("AZURINE_THREADS", "all cores", "llama.cpp compute threads"),
    Setting("AZURINE_MODEL_MEMORY", "`50%`",
            "the memory the loaded in-process models may hold together, beyond which the least recently used idle "
            "ones are unloaded: a size (`6GiB`, `800MiB`, `8GB`; `6G` is binary) or a share of the memory (`50%`, "
            "of the container's limit where that is lower); a value that is neither stops the server at startup"),
    Setting("AZURINE_REGION", "`local`",
            "the server's Azure location: the default account's and resource group's `location`, and the location "
            "the management plane lists"),
    Setting("AZURINE_REGION_DISPLAY_NAME", "`Local`", "the `x-ms-region` header"),
    Setting("AZURINE_TRUSTED_ISSUERS", "Azurine's own only",
            "comma-separated OpenID Connect issuer URLs whose tokens both planes accept"),
    Setting("AZURINE_PUBLIC_URL", "the request's own address",
            "the address clients reach this server at, for the issuer URL in tokens and discovery and the links to "
            "generated images"),
    Setting("AZURINE_SIGNING_KEY_DAYS", "30",
            "how long the built-in issuer signs with one key before it rotates"),
    Setting("AZURINE_TOKEN_CACHE_SECONDS", "60",
            "how long a verified token or a signing key is trusted without looking again"),
    Setting("AZURINE_JWKS_REFETCH_SECONDS", "60",
            "the least time between two fetches of a trusted issuer's keys for unknown key ids"),
    Setting("AZURINE_TOKEN_FAILURES_PER_MINUTE", "20",
            "failed requests to the built-in issuer's token endpoints a client address may make in a minute before "
            "it is answered 429 with `Retry-After` (0: no limit)"),
    Setting("AZURINE_ROLE", "`all`",
            "`azurine serve --role` where the flag is not given: `all` (API and batch worker), `gateway` (API only) "
            "or `worker` (batch work, no listener)"),
    Setting("AZURINE_MAX_HEADER_BYTES", "`64KiB`",
            "a request's line and headers together; more is refused with 431 before authentication"),
    Setting("AZURINE_MAX_BODY_BYTES", "`64MiB`",
            "a request body other than a file upload (uploads have Azure's 200 MB file limit and stream); more is "
            "refused with 413 before authentication"),
    Setting("AZURINE_MAX_JSON_DEPTH", "64",
            "arrays and objects nested in a JSON body or a batch input line (the parser stops at 200 whatever is "
            "set); deeper is a 400, or a bad line"),
    Setting("AZURINE_MAX_BLOCKLIST_REGEX_CHARS", "100000",
            "characters of regex patterns in all the blocklists of one account (exact terms do not count); an item "
            "that would pass it is refused with ARM's 400 `RaiBlocklistItemsLimitExceeded`"),
    Setting("AZURINE_TRUSTED_PROXIES", "none",
            "comma-separated addresses or CIDRs of proxies whose `X-Forwarded-For` (and `X-Forwarded-Proto`) is "
            "believed"),
    Setting("AZURINE_BATCH_WINDOW_SECONDS", "86400",
            "shortens the 24-hour batch window (demos and tests of expiry)"),
    Setting("AZURINE_RESPONSE_RETENTION_DAYS", "30",
            "how long a stored response of the Responses API is kept, after which it reads as gone and is removed "
            "(a whole number of at least 1)"),
    Setting("AZURINE_IMAGE_LINK_SECONDS", "3600",
            "how long the signed link to a generated image (`response_format: url`) works, after which the image is "
            "removed (a whole number of at least 1)"),
    Setting("AZURINE_SEQUENCES", "8",
            "online answers (provisioned, standard) one model decodes together, each in a slot of its own"),
    Setting("AZURINE_SLOT_TOKENS", "2048",
            "a slot's cells: a longer prompt runs alone in a context of the model's full length, and an answer that "
            "fills its slot goes on there"),
    Setting("AZURINE_TOOL_CALL_REPEATS", "`answer`",
            "with tools on `auto`, an in-process model's answer that only makes again calls whose results it already "
            "has since the last user message is decoded anew as prose (`answer`), or returned as those calls "
            "(`allow`, for tools an application polls with the same arguments)"),
    Setting("AZURINE_UPSTREAM_CONCURRENCY", "16",
            "requests in flight to one upstream model server at most, shared by every deployment on it; the rest "
            "wait in Azurine, provisioned before standard before batch, deployments taking turns"),
    Setting("AZURINE_UPSTREAM_PRIORITY", "none",
            "upstream servers (comma-separated base URLs as given to `--upstream-url`, or `1` for all) that get each "
            "request's class as vLLM's `priority` field (provisioned 0, standard 1, batch 2); only for vLLM run with "
            "`--scheduling-policy priority`, which otherwise refuses a non-zero priority"),
    Setting("AZURINE_FINE_TUNING_THREADS", "1",
            "torch threads a fine-tuning job trains on (its thread runs at nice 19, so online serving goes first)"),
    Setting("AZURINE_BATCH_SEQUENCES", "8", "batch answers llama.cpp decodes in one pass (1: one at a time)"),
    Setting("AZURINE_IMAGE_URL_FETCH", "`off`",
            "a chat image given by `http(s)://` URL on a vision deployment (data URLs are always read): `off` refuses "
            "it with a 400; `on` has Azurine download it (20 MB, 10 s, 3 redirects, public addresses only unless "
            "`AZURINE_IMAGE_URL_ALLOW_PRIVATE`) and send it on inline; `upstream` passes it as given to an upstream "
            "deployment's server, which downloads it by its own rules (in-process deployments still refuse it); see "
            "[vision.md](vision.md)"),
    Setting("AZURINE_IMAGE_URL_ALLOW_PRIVATE", "`false`",
            "addresses image downloads may reach besides public ones: `true` for any (loopback, private, link-local, "
            "…), or comma-separated addresses and CIDRs, e.g. an internal image store's `10.1.2.0/24`"),
    Setting("AZURINE_UPSTREAM_API_KEY", "none",
            "`azurine deployments create --upstream-api-key` where the flag is not given: the key for the upstream "
            "server"),
    Setting("AZURINE_PRICES", "the table packaged with Azurine (Azure's list prices)",
            "a TOML price file, per model and deployment type, that the server's Cost Management query reads, and "
            "`azurine cost show` and `advise` where `--prices` is not given (see [cost.md](cost.md))"),
    Setting("AZURINE_PROTECTED_CORPUS", "the small corpus packaged with Azurine",
            "a directory of the works the protected-material filters find copies of: text in `.txt` files, code in "
            "source files (`.py`, `.js`, `.c`, …), each optionally beside a `<file>.json` giving its `title`, `url` "
            "and `license`"),
    Setting("AZURINE_SERVICE_KEY", "`service.key` in the data directory",
            "32 bytes in base64 that wrap data keys; the same in every process sharing a database"),
    Setting("AZURINE_KEY_CACHE_SECONDS", "60",
            "how long an unwrapped data key is kept in memory: a revoked key stops every replica within it"),
    Setting("AZURINE_VAULT_ADDR", "none", "a HashiCorp Vault whose transit keys accounts may use"),
    Setting("AZURINE_VAULT_TOKEN", "none", "the token Azurine gives that Vault (`X-Vault-Token`)"),
    Setting("AZURINE_VAULT_TRANSIT_MOUNT", "`transit`", "where that Vault's transit engine is mounted"),
    Setting("AZURINE_VAULT_NAMESPACE", "none", "that Vault's namespace (`X-Vault-Namespace`)"),
    Setting("AZURINE_KEY_VAULT_ALLOWED", "none",
            "comma-separated Azure key vaults accounts may use with the server's credentials: "
            "`https://<name>.vault.azure.net` for its default credential, `…#<client id>` for that managed identity "
            "of the host (an account's `identityClientId`)"),
    Setting("AZURINE_ENDPOINT", "`http://localhost:8080`",
            f"`--endpoint` of {_MANAGEMENT_COMMANDS} where the flag is not given: the server's base URL"),
    Setting("AZURINE_SUBSCRIPTION", "`00000000-0000-0000-0000-000000000000` (the scope's for `role assignment`)",
            f"`--subscription` of {_MANAGEMENT_COMMANDS} and of `azurine quota set` and `show` where the flag is not "
            "given"),
    Setting("AZURINE_TOKEN", "one minted from the database in `--data-dir`",
            f"`--token` of {_MANAGEMENT_COMMANDS} where the flag is not given: a management-plane bearer token"),
    Setting("AZURINE_CA_BUNDLE", "the usual trusted certificates",
            f"`--ca-bundle` of {_MANAGEMENT_COMMANDS} where the flag is not given: a PEM file of certificates to "
            "trust for HTTPS, e.g. the server's self-signed one"),
)

BY_NAME: dict[str, Setting] = {entry.env: entry for entry in SETTINGS}


class UnknownSetting(KeyError):
    """A variable the table does not document: add it to `SETTINGS` before reading it."""


def setting(name: str) -> Setting:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownSetting(f"{name} is not in azurine.settings_table.SETTINGS") from None


@overload
def read(name: str) -> str | None: ...


@overload
def read(name: str, default: str) -> str: ...


def read(name: str, default: str | None = None) -> str | None:
    """The variable's value as `os.environ.get` gives it (an empty value stays empty), read at each call."""
    return os.environ.get(setting(name).env, default)


def envvar(name: str) -> str:
    """The name for a typer option's `envvar=`, once the table is known to hold it."""
    return setting(name).env
