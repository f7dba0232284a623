#!/bin/bash
#
# File: phoenix_hypervisor_feature_install_vllm.sh
# Description: Phoenix Hypervisor feature "vllm", built from a vllm-lock lock file.
#              Drop-in replacement for Phoenix's script of the same name: install it as
#              /usr/local/phoenix_hypervisor/bin/lxc_setup/phoenix_hypervisor_feature_install_vllm.sh.
#
#   phoenix_hypervisor_feature_install_vllm.sh <CTID> [bootstrap_ca_url]
#
# Runs on the Proxmox host. Chooses a lock (per-container key "vllm_lock" in
# phoenix_lxc_configs.json, default "stable"), pushes the lock and an offline wheel bundle of
# vllm-lock into the container, installs the OS packages the build needs, then runs
# `vllm-lock install` into /opt/vllm (+ /opt/vllm_repo), streaming its output into Phoenix's log
# line by line, and verifies with `vllm --version` and `vllm-lock verify`.
#
# Host layout (P = /usr/local/phoenix_hypervisor, found relative to this script):
#   P/etc/vllm-locks/<name>.lock.toml             the locks ("stable", "dev", ...)
#   P/share/vllm-lock/vllm-lock-bundle.tar        offline bundle (phoenix/build-vllm-lock-bundle.sh)
#   P/etc/vllm-locks/<name>.lock.toml.sig         its SSH signature (vllm-lock promote --sign-key)
#   P/etc/vllm-locks/allowed_signers              optional trusted keys: when present, only locks
#                                                 signed by one of them are accepted (docs/signing.md)
#   P/etc/certs/proxy_ca.crt                      optional proxy CA, pushed into the container
#   P/etc/vllm-cache/trusted-keys                 binary cache: trusted public keys (name:base64)
#   P/etc/vllm-cache/signing.key                  binary cache: the host's secret key; present = the
#                                                 host signs and publishes what containers build
#   P/share/vllm-lock/bundles/<name>.tar          optional offline bundle of lock <name> (vllm-lock
#                                                 bundle), installed with --from-bundle
# Container layout:
#   /opt/vllm-lock/{venv,bundle,locks}            vllm-lock itself and the pushed lock (+ .sig)
#   /opt/vllm-lock/allowed_signers                the host's trusted keys, for install --require-signed
#   /opt/vllm-lock/installed                      "<lock sha256> <lock name>" after a verified install
#   /opt/vllm-lock/{cache,cache-keys}             the entry + wheel the host found, and the trusted keys
#   /opt/vllm-lock/{outbox,outbox.secret}         a build's wheel + entry for the host to sign (throwaway key)
#   /opt/vllm-lock/bundles/<name>.tar             the lock's offline bundle, while the install needs it
#   /opt/vllm, /opt/vllm_repo                     what the application runner uses (unchanged)
#
# Idempotent: a rerun after success checks the stamp + `vllm-lock verify` and exits; a rerun after
# a failure runs `vllm-lock install` again, which resumes (no `git clone` here).
# Security: CTID must be digits, the lock name must match ^[a-z0-9][a-z0-9._-]{0,63}$, and no
# value from the config or the command line is ever interpolated into a shell string: everything
# reaches the container as separate argv elements. TLS verification is never disabled: vllm-lock
# uses the container's system trust store (uv with system certificates, git with the system bundle).
# The lock is untrusted input: on the host, before anything reaches the container, it must be a
# regular file (never a symlink), its signature must be good when trusted keys are configured,
# and it must read as a valid lock (vllm-lock from the bundle, run on the host; bash checks only
# when the host cannot run it). What is checked is a private copy, and that copy is what is pushed.
# Binary cache (optional key "vllm_cache": a directory, http(s):// or s3:// URL): the host looks the
# lock's build up with the bundle's vllm-lock and pushes a verified hit into the container, which
# checks it again and installs it without compiling; a container that builds leaves its wheel in an
# outbox, and the host checks it, signs it with its own key (never pushed into a container) and
# publishes it. docs/phoenix.md has the threat model.

set -e
set -o pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &>/dev/null && pwd)
# shellcheck source=/dev/null
source "${SCRIPT_DIR}/../phoenix_hypervisor_common_utils.sh"

# --- Host side -----------------------------------------------------------------------------
PHOENIX_ROOT=$(cd -- "${SCRIPT_DIR}/../.." &>/dev/null && pwd)
VLLM_LOCK_DIR="${VLLM_LOCK_DIR:-${PHOENIX_ROOT}/etc/vllm-locks}"
VLLM_LOCK_BUNDLE="${VLLM_LOCK_BUNDLE:-${PHOENIX_ROOT}/share/vllm-lock/vllm-lock-bundle.tar}"
PROXY_CA_FILE="${PROXY_CA_FILE:-${PHOENIX_ROOT}/etc/certs/proxy_ca.crt}"
VLLM_LOCK_TRUSTED_KEYS="${VLLM_LOCK_TRUSTED_KEYS:-${VLLM_LOCK_DIR}/allowed_signers}"
SIG_NAMESPACE="vllm-lock"
MAX_LOCK_BYTES=$((16 * 1024 * 1024))  # real locks are ~100 KB
DEFAULT_LOCK_NAME="stable"
LOCK_NAME_RE='^[a-z0-9][a-z0-9._-]{0,63}$'
CTID_RE='^[0-9]{1,9}$'
VLLM_CACHE_KEYS_DIR="${PHOENIX_ROOT}/etc/vllm-cache"
CACHE_TRUSTED_KEYS="${VLLM_CACHE_KEYS_DIR}/trusted-keys"
CACHE_SIGNING_KEY="${VLLM_CACHE_KEYS_DIR}/signing.key"
LOCK_BUNDLE_DIR="${PHOENIX_ROOT}/share/vllm-lock/bundles"
# The "vllm_cache" value: an absolute directory (or file:///DIR), http(s)://HOST[:PORT][/PATH] or
# s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME]. Path segments never start with a dot (no "..");
# no user-info (credentials stay in the host's AWS configuration, never in phoenix_lxc_configs.json).
CACHE_URL_RE='^((file://)?(/[A-Za-z0-9_][A-Za-z0-9._-]{0,63})+/?|https?://([A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?(/[A-Za-z0-9_][A-Za-z0-9._~-]{0,63})*/?|s3://[a-z0-9][a-z0-9.-]{1,62}(/[A-Za-z0-9_][A-Za-z0-9._~-]{0,63})*/?(\?[A-Za-z0-9._~:/=&-]{1,512})?)$'
MAX_CACHE_URL=1024
MAX_ENTRY_BYTES=16384  # vllm-lock's own bound on an entry
MAX_BUILT_WHEEL_BYTES=$((8 * 1024 * 1024 * 1024))  # a container's wheel the host will take (vLLM's are < 1 GiB)
OUTBOX_READ_SECONDS=900  # reading a container's entry or wheel: a FIFO or a drip stops here (8 GiB at 10 MB/s)

# --- Container side ------------------------------------------------------------------------
VENV_DIR="/opt/vllm"
SRC_DIR="/opt/vllm_repo"
TOOL_DIR="/opt/vllm-lock"
TOOL_VENV="${TOOL_DIR}/venv"
TOOL_BIN="${TOOL_VENV}/bin/vllm-lock"
CT_LOCK_DIR="${TOOL_DIR}/locks"
STAMP_FILE="${TOOL_DIR}/installed"
CT_TRUSTED_KEYS="${TOOL_DIR}/allowed_signers"
BUNDLE_STAMP="${TOOL_DIR}/bundle.sha256"
CT_CACHE_DIR="${TOOL_DIR}/cache"
CT_CACHE_KEYS="${TOOL_DIR}/cache-keys"
CT_OUTBOX="${TOOL_DIR}/outbox"
CT_OUTBOX_KEY="${TOOL_DIR}/outbox.secret"
CT_BUNDLE_DIR="${TOOL_DIR}/bundles"
SYSTEM_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"
CT_PATH="/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the build needs on Ubuntu 24.04 / Debian 12; only the missing ones are installed.
OS_PACKAGES=(build-essential ca-certificates cmake git ninja-build python3 python3-dev python3-venv)

CTID=""
LOCK_NAME=""
LOCK_FILE=""  # the lock on the host, as configured (only named in logs)
HOST_WORK=""  # private host directory: the checked copies of lock and signature
HOST_LOCK=""  # the checked copy: what is hashed, validated and pushed
HOST_SIG=""
LOCK_SHA=""
CT_LOCK=""
TRUSTED_KEYS_FILE=""  # set when the host requires signed locks
INSTALL_SIGNED_ARGS=()
STREAM_TAIL=""
CACHE_URL=""  # the configured binary cache, normalized (a directory becomes file:///DIR)
CACHE_TOOL=""  # set when the bundle's vllm-lock can run the cache steps on the host
CACHE_KEYS_FILE=""  # trusted public keys for the container (the host's own signing key's included)
CACHE_SIGNING=""  # set when the host signs and publishes builds (CACHE_SIGNING_KEY exists)
CACHE_HIT=""  # "<entry> <wheel path> <signer>" of the host's lookup
ENTRY_NAME=""  # <identity>.entry of the lock's wheel build
LOCK_BUNDLE=""  # P/share/vllm-lock/bundles/<name>.tar, when present
INSTALL_CACHE_ARGS=()

# The bundle's vllm-lock runs on the host through its command line only (`python3 -m vllm_lock.cli`
# with the bundle's wheels unpacked into a private site folder: nothing is installed on the host,
# and cryptography is compiled code, so no zipimport). argv: SITE ARGS...
HOST_VLLM_LOCK_PY='import runpy, sys
sys.path.insert(0, sys.argv.pop(1))
sys.argv[0] = "vllm-lock"
runpy.run_module("vllm_lock.cli", run_name="__main__")'
# Unpacks wheels (zip files) into a folder. argv: SITE WHEEL...
UNPACK_WHEELS_PY='import sys, zipfile
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(sys.argv[1])'
# The host check's one-line summary of `vllm-lock show LOCK --json`.
LOCK_SUMMARY_JQ='"\(.name) (\(.phase)), vLLM \(.vllm.commit[0:9]), torch \(.torch.version), target Python \(.target.python), build \(."build-identity"[0:16])"'

# =====================================================================================
# Validation (before anything touches the container)
# =====================================================================================
validate_ctid() {
    if [[ ! "$1" =~ $CTID_RE ]]; then
        log_error "Refusing: CTID must be digits only, got $(printf '%q' "$1")."
        exit_script 2
    fi
}

# A malformed config would read as "no vllm_lock key" (jq_get_value fails the same way) and
# choose the default lock silently: refuse it with jq's own message instead.
check_config_json() {
    local out msg dup
    if ! out=$(jq -e -s 'length == 1 and (.[0] | type == "object")' "$LXC_CONFIG_FILE" 2>&1); then
        if [ "$out" == "false" ]; then
            msg="it does not hold exactly one JSON object"
        else
            msg=$(last_line "$out")
        fi
        log_error "Refusing: ${LXC_CONFIG_FILE} is not valid JSON: ${msg}"
        exit_script 2
    fi
    # jq keeps the last of duplicate keys without a word, so `"vllm_lock": "stable"` reviewed at the
    # top of an object could be overridden by a second `"vllm_lock"` (or `"vllm\u005flock"`) below
    # it (the same for `"vllm_cache"`). The stream form sees every occurrence: more than one value
    # under one object is refused.
    dup=$(jq -r -n --stream "$DUPLICATE_LOCK_KEY_JQ" "$LXC_CONFIG_FILE" | head -n 1)
    if [ -n "$dup" ]; then
        log_error "Refusing: ${LXC_CONFIG_FILE} has more than one '${dup##*.}' value at $(printf '%q' "$dup") (a duplicate key; jq would silently use the last)."
        exit_script 2
    fi
}

# Paths (a.b.c.key) of "vllm_lock" or "vllm_cache" keys with more than one leaf in one object:
# duplicate keys (or a non-string value with several leaves, refused later anyway).
DUPLICATE_LOCK_KEY_JQ='[inputs | select(length == 2) | .[0] | (map(. == "vllm_lock" or . == "vllm_cache") | index(true)) as $i
  | select($i != null) | .[0:$i + 1]] | group_by(.) | map(select(length > 1) | .[0] | map(tostring) | join(".")) | .[]'

# A file name as one log line can show it: printf %q escapes a newline or a control character
# (a symlink target `$'/x\n... [SUCCESS] ...'` must not forge a second log line).
shown_link_target() {
    local target
    target=$(readlink -- "$1" | head -c 300)
    printf '%q' "$target"
}

last_line() {
    printf '%s\n' "$1" | sed '/^[[:space:]]*$/d' | tail -n 1
}

# One log line saying why, exit 3 (vllm-lock's "lock not acceptable"); nothing reached the container.
refuse_lock() {
    log_error "Refusing lock '${LOCK_NAME}': $*"
    exit_script 3
}

# Sets LOCK_NAME / LOCK_FILE / LOCK_SHA from the per-container "vllm_lock" key (or the file
# root's, via jq_get_value's fallback), default "stable", and copies lock + signature into
# HOST_WORK (HOST_LOCK / HOST_SIG).
choose_lock() {
    local raw name
    # JSON-encoded, so that "" or a non-string is refused instead of silently meaning "absent"
    if raw=$(jq_get_value "$CTID" '.vllm_lock | if . == null then null else tojson end' 2>/dev/null); then
        name="${raw#\"}"
        name="${name%\"}"
        if [[ "$raw" != "\"${name}\"" || ! "$name" =~ $LOCK_NAME_RE ]]; then
            log_error "Refusing: 'vllm_lock' must be a string matching ${LOCK_NAME_RE}, got ${raw}."
            exit_script 2
        fi
    else
        name="$DEFAULT_LOCK_NAME"
    fi
    LOCK_NAME="$name"
    LOCK_FILE="${VLLM_LOCK_DIR}/${LOCK_NAME}.lock.toml"
    if [ -L "$LOCK_FILE" ]; then
        refuse_lock "${LOCK_FILE} is a symbolic link (to $(shown_link_target "$LOCK_FILE")); a lock must be a regular file."
    fi
    if [ ! -e "$LOCK_FILE" ]; then
        log_fatal "Lock '${LOCK_NAME}' not found: ${LOCK_FILE} (put locks in ${VLLM_LOCK_DIR}/<name>.lock.toml)."
    fi
    HOST_LOCK="${HOST_WORK}/${LOCK_NAME}.lock.toml"
    HOST_SIG="${HOST_LOCK}.sig"
    copy_regular_file "$LOCK_FILE" "$HOST_LOCK" "the lock"
    if [ ! -s "$HOST_LOCK" ]; then
        refuse_lock "${LOCK_FILE} is empty."
    fi
    if [ -L "${LOCK_FILE}.sig" ] || [ -e "${LOCK_FILE}.sig" ]; then
        copy_regular_file "${LOCK_FILE}.sig" "$HOST_SIG" "its signature"
    fi
    LOCK_SHA=$(sha256sum <"$HOST_LOCK" | cut -d' ' -f1)
    CT_LOCK="${CT_LOCK_DIR}/${LOCK_NAME}.lock.toml"
    log_info "Using lock '${LOCK_NAME}' (${LOCK_FILE}, sha256 ${LOCK_SHA:0:12})."
}

# Copies a regular file (never through a symlink, never a device or FIFO, at most MAX_LOCK_BYTES)
# into HOST_WORK. cp -P copies a link as a link, so a file swapped for a link after the test
# below is caught on the copy.
copy_regular_file() {
    local src="$1" dst="$2" what="$3" size
    if [ -L "$src" ]; then
        refuse_lock "${src} is a symbolic link (to $(shown_link_target "$src")); ${what} must be a regular file."
    fi
    if [ ! -f "$src" ]; then
        refuse_lock "${src} is not a regular file; ${what} must be one."
    fi
    size=$(stat -c %s -- "$src")
    if [ "$size" -gt "$MAX_LOCK_BYTES" ]; then
        refuse_lock "${src} is ${size} bytes; ${what} is at most ${MAX_LOCK_BYTES}."
    fi
    if ! cp -P -- "$src" "$dst" 2>/dev/null || [ -L "$dst" ] || [ ! -f "$dst" ]; then
        refuse_lock "${src} could not be read as a regular file."
    fi
}

# Trusted keys on the host turn signature checks on, here and in the container.
configure_signature_checks() {
    if [ ! -L "$VLLM_LOCK_TRUSTED_KEYS" ] && [ ! -e "$VLLM_LOCK_TRUSTED_KEYS" ]; then
        return 0
    fi
    if [ ! -f "$VLLM_LOCK_TRUSTED_KEYS" ] || [ ! -r "$VLLM_LOCK_TRUSTED_KEYS" ]; then
        log_error "Refusing: the trusted keys ${VLLM_LOCK_TRUSTED_KEYS} are not a readable file."
        exit_script 2
    fi
    TRUSTED_KEYS_FILE="$VLLM_LOCK_TRUSTED_KEYS"
    INSTALL_SIGNED_ARGS=(--require-signed --trusted-keys "$CT_TRUSTED_KEYS")
    OS_PACKAGES+=(openssh-client)  # ssh-keygen, for the container's own check
}

# With trusted keys: the lock must carry a good signature by one of them, checked with OpenSSH's
# ssh-keygen exactly as an operator would (docs/signing.md), on the host copy that is pushed.
check_lock_signature() {
    if [ -z "$TRUSTED_KEYS_FILE" ]; then
        log_info "No trusted keys at ${VLLM_LOCK_TRUSTED_KEYS}: locks are not signature-checked."
        return 0
    fi
    command -v ssh-keygen >/dev/null 2>&1 ||
        log_fatal "ssh-keygen (openssh-client) is required on the host to check lock signatures against ${TRUSTED_KEYS_FILE}."
    if [ ! -f "$HOST_SIG" ]; then
        refuse_lock "it is not signed (no ${LOCK_FILE}.sig); this host accepts only locks signed by a key in ${TRUSTED_KEYS_FILE}."
    fi
    local out key principals principal
    if ! out=$(ssh-keygen -Y check-novalidate -n "$SIG_NAMESPACE" -s "$HOST_SIG" <"$HOST_LOCK" 2>&1); then
        refuse_lock "its signature does not match the lock (changed after signing?) or is not a ${SIG_NAMESPACE} signature: $(last_line "$out")"
    fi
    key=$(sed -n 's/^Good ".*" signature with //p' <<<"$out" | head -n 1)
    if ! principals=$(ssh-keygen -Y find-principals -s "$HOST_SIG" -f "$TRUSTED_KEYS_FILE" 2>/dev/null) ||
        [ -z "$principals" ]; then
        refuse_lock "it is signed by ${key:-a key}, which is not a trusted key in ${TRUSTED_KEYS_FILE}."
    fi
    while IFS= read -r principal; do
        [ -n "$principal" ] || continue
        if out=$(ssh-keygen -Y verify -f "$TRUSTED_KEYS_FILE" -I "$principal" -n "$SIG_NAMESPACE" \
            -s "$HOST_SIG" <"$HOST_LOCK" 2>&1); then
            log_info "Lock '${LOCK_NAME}': good signature by ${principal} (${key}), trusted by ${TRUSTED_KEYS_FILE}."
            return 0
        fi
    done <<<"$principals"
    refuse_lock "its signature by ${key} is not accepted by ${TRUSTED_KEYS_FILE}: $(last_line "$out")"
}

# The lock must read as a valid lock before it goes anywhere. With the bundle and Python >= 3.11
# on the host (Proxmox VE 8 has 3.11), the bundle's vllm-lock reads it here; otherwise only bash
# checks run here and the container's vllm-lock, which reads the lock before it builds anything,
# is the full check.
# Can the bundle's vllm-lock run on this host? Sets HOST_PY and TOOL_PROBLEM (empty: yes); the
# bundle is unpacked into HOST_WORK/bundle and its checksums checked, once.
check_host_tool() {
    TOOL_PROBLEM=""
    HOST_PY=$(command -v python3 || true)
    if [ ! -f "$VLLM_LOCK_BUNDLE" ]; then
        TOOL_PROBLEM="no offline bundle at ${VLLM_LOCK_BUNDLE}"
    elif [ -z "$HOST_PY" ]; then
        TOOL_PROBLEM="no python3 on the host"
    elif ! "$HOST_PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        TOOL_PROBLEM="the host's python3 is older than 3.11"
    elif [ ! -f "${HOST_WORK}/bundle/.checked" ]; then
        mkdir -p "${HOST_WORK}/bundle"
        if ! tar -xf "$VLLM_LOCK_BUNDLE" -C "${HOST_WORK}/bundle" 2>/dev/null ||
            ! (cd "${HOST_WORK}/bundle" && sha256sum -c --quiet SHA256SUMS >/dev/null 2>&1); then
            log_fatal "The vllm-lock bundle ${VLLM_LOCK_BUNDLE} failed its checksums on the host."
        fi
        : >"${HOST_WORK}/bundle/.checked"
    fi
}

# The bundle's wheels (all but uv's: the resolver's binary is not needed here) unpacked into
# HOST_WORK/site, once; prints why not on a failure.
unpack_host_tool() {
    local wheels=() wheel
    [ ! -f "${HOST_WORK}/site/.unpacked" ] || return 0
    for wheel in "${HOST_WORK}"/bundle/*.whl; do
        case "${wheel##*/}" in
        uv-*) ;;
        *) wheels+=("$wheel") ;;
        esac
    done
    mkdir -p "${HOST_WORK}/site"
    "$HOST_PY" -I -c "$UNPACK_WHEELS_PY" "${HOST_WORK}/site" "${wheels[@]}" 2>&1 || return 1
    : >"${HOST_WORK}/site/.unpacked"
}

# Runs the bundle's vllm-lock (its command line) on the host: stdout and stderr together.
host_vllm_lock() {
    "$HOST_PY" -I -c "$HOST_VLLM_LOCK_PY" "${HOST_WORK}/site" "$@" 2>&1
}

validate_lock_on_host() {
    local why="" out
    check_host_tool
    why="$TOOL_PROBLEM"
    if [ -z "$why" ]; then
        # Only a failure of this probe (unpack, import, no `show`) falls back to bash checks; once it
        # passes, any non-zero exit of the check refuses the lock (a crash on a hostile lock must
        # never read as "cannot run here").
        if ! out=$(unpack_host_tool) || ! out=$(host_vllm_lock show --help); then
            why="the bundle's vllm-lock cannot run on the host ($(last_line "$out"))"
        elif out=$(host_vllm_lock show "$HOST_LOCK" --json) && out=$(jq -er "$LOCK_SUMMARY_JQ" <<<"$out" 2>&1); then
            log_info "Lock '${LOCK_NAME}' validated on the host by the bundle's vllm-lock: ${out}"
            return 0
        else
            local rc=$?
            out=$(last_line "${out//"$HOST_LOCK"/"$LOCK_FILE"}")
            if [[ "$out" == error:* ]]; then
                refuse_lock "vllm-lock: ${out}"
            fi
            refuse_lock "the bundle's vllm-lock failed on it (exit ${rc}): ${out:-no output}"
        fi
    fi
    if ! grep -q '^lock-version = ' "$HOST_LOCK"; then
        refuse_lock "${LOCK_FILE} is not a vllm-lock lock (no lock-version line)."
    fi
    log_warn "Lock '${LOCK_NAME}' checked on the host in bash only (${why}); vllm-lock validates it in CTID ${CTID} before anything is built."
}

# =====================================================================================
# Binary cache and offline bundle: configuration (before anything touches the container)
# =====================================================================================
# "vllm_cache" (per container, else the file root's, like vllm_lock): refused unless a string
# matching CACHE_URL_RE; a directory becomes file:///DIR.
read_cache_setting() {
    local raw value
    if ! raw=$(jq_get_value "$CTID" '.vllm_cache | if . == null then null else tojson end' 2>/dev/null); then
        return 0
    fi
    value="${raw#\"}"
    value="${value%\"}"
    if [[ "$raw" != "\"${value}\"" || "${#value}" -gt "$MAX_CACHE_URL" || ! "$value" =~ $CACHE_URL_RE ]]; then
        log_error "Refusing: 'vllm_cache' must be an absolute directory, file:///DIR, http(s)://HOST[:PORT]/PATH or s3://BUCKET/PREFIX[?endpoint=URL] (letters, digits, '.', '_', '-', '~'; no credentials), got $(printf '%q' "${raw:0:200}")."
        exit_script 2
    fi
    case "$value" in
    /*) value="file://${value%/}" ;;
    file://* | http://* | https://*) value="${value%/}" ;;
    esac
    CACHE_URL="$value"
}

# The cache steps run here with the bundle's vllm-lock (unpacked into HOST_WORK/site: it signs with
# compiled code). Where it cannot run, the container builds: the cache saves time, it is never a
# reason to fail. Bad key files are refused (exit 2).
configure_binary_cache() {
    local f out key_args=()
    [ -n "$CACHE_URL" ] || return 0
    for f in "$CACHE_TRUSTED_KEYS" "$CACHE_SIGNING_KEY"; do
        if [ -L "$f" ] || { [ -e "$f" ] && [ ! -f "$f" ]; }; then
            log_error "Refusing: ${f} must be a regular file, not a link or anything else."
            exit_script 2
        fi
    done
    if [ -f "$CACHE_SIGNING_KEY" ]; then
        if [ -n "$(find "$CACHE_SIGNING_KEY" -perm /077 -print)" ]; then
            log_error "Refusing: the cache signing key ${CACHE_SIGNING_KEY} is open to others than its owner (chmod 600 it)."
            exit_script 2
        fi
        CACHE_SIGNING=1
    fi
    check_host_tool
    if [ -n "$TOOL_PROBLEM" ]; then
        log_warn "Binary cache ${CACHE_URL} not used: ${TOOL_PROBLEM} (its steps run on the host with the bundle's vllm-lock); CTID ${CTID} builds."
        CACHE_SIGNING=""
        return 0
    fi
    rm -f -- "${HOST_WORK}/probe.secret"
    if ! out=$(unpack_host_tool) || ! out=$(host_vllm_lock key generate --name probe -o "${HOST_WORK}/probe.secret"); then
        log_warn "Binary cache ${CACHE_URL} not used: the bundle's vllm-lock cannot check or sign on this host ($(last_line "$out")); CTID ${CTID} builds."
        CACHE_SIGNING=""
        return 0
    fi
    rm -f -- "${HOST_WORK}/probe.secret"
    [ ! -f "$CACHE_TRUSTED_KEYS" ] || key_args+=(--trusted-cache-keys-file "$CACHE_TRUSTED_KEYS")
    [ -z "$CACHE_SIGNING" ] || key_args+=(--cache-signing-key "$CACHE_SIGNING_KEY")
    CACHE_KEYS_FILE="${HOST_WORK}/cache-keys"
    if ! out=$(host_vllm_lock cache keys -o "$CACHE_KEYS_FILE" "${key_args[@]}"); then
        log_error "Refusing: binary cache keys: $(last_line "$out")"
        exit_script 2
    fi
    if ! ENTRY_NAME=$(host_vllm_lock cache name "$HOST_LOCK") || [[ ! "$ENTRY_NAME" =~ ^[A-Za-z0-9._-]+\.entry$ ]]; then
        log_fatal "The bundle's vllm-lock cannot name the build of lock '${LOCK_NAME}': $(last_line "$ENTRY_NAME")"
    fi
    CACHE_TOOL=1
    log_info "Binary cache ${CACHE_URL} for lock '${LOCK_NAME}' (${ENTRY_NAME}); trusted keys: $(last_line "$out")${CACHE_SIGNING:+; this host signs and publishes new builds (${CACHE_SIGNING_KEY})}."
}

# P/share/vllm-lock/bundles/<lock name>.tar, when present: everything the install reads, for a
# container without network (the container's vllm-lock checks it against the lock).
choose_lock_bundle() {
    local bundle="${LOCK_BUNDLE_DIR}/${LOCK_NAME}.tar"
    if [ -L "$bundle" ]; then
        log_error "Refusing: the offline bundle ${bundle} is a symbolic link (to $(shown_link_target "$bundle")); put the file itself there."
        exit_script 2
    fi
    [ -e "$bundle" ] || return 0
    if [ ! -f "$bundle" ]; then
        log_error "Refusing: the offline bundle ${bundle} is not a regular file."
        exit_script 2
    fi
    LOCK_BUNDLE="$bundle"
    log_info "Offline bundle for lock '${LOCK_NAME}': ${bundle} ($(stat -c %s -- "$bundle") bytes); CTID ${CTID} installs from it (--from-bundle)."
}

# =====================================================================================
# Container helpers
# =====================================================================================
# Quiet probe: runs argv in the container, no logging, exit status only.
ct_probe() {
    pct exec "$CTID" -- "$@" </dev/null >/dev/null 2>&1
}

# Runs argv in the container and streams every output line into Phoenix's log as it arrives
# (pct_exec would hold all of it until the command ends). The last lines are kept in
# STREAM_TAIL for error diagnosis. Returns the command's exit status.
run_streaming() {
    local label="$1"
    shift
    local rc=0
    log_info "[${label}] running in CTID ${CTID}: $*"
    : >"$STREAM_TAIL"
    : >"${STREAM_TAIL}.substituted"
    pct exec "$CTID" -- "$@" </dev/null 2>&1 | _log_lines "$label" || rc=$?
    if [ "$rc" -ne 0 ]; then
        log_error "[${label}] exited with code ${rc}."
    fi
    return "$rc"
}

_log_lines() {
    local label="$1" line
    while IFS= read -r line || [ -n "$line" ]; do
        log_info "[${label}] ${line}"
        printf '%s\n' "$line" >>"$STREAM_TAIL"
        case "$line" in
        *"substituted from "*) printf '%s\n' "$line" >>"${STREAM_TAIL}.substituted" ;;
        esac
    done
    # keep the tail file small
    tail -n 200 "$STREAM_TAIL" >"${STREAM_TAIL}.t" && mv -f "${STREAM_TAIL}.t" "$STREAM_TAIL"
}

# What uv, git, pip and Python print when a certificate is not trusted.
TLS_ERROR_RE='certificate verify failed|CERTIFICATE_VERIFY_FAILED|TLS certificate not trusted|invalid peer certificate|UnknownIssuer|SSL certificate problem|unable to get local issuer certificate|self[- ]signed certificate'

explain_tls_failure() {
    if grep -qiE "$TLS_ERROR_RE" "$STREAM_TAIL" 2>/dev/null; then
        log_error "TLS verification failed: CTID ${CTID} does not trust the certificate of an index or repository in lock '${LOCK_NAME}'."
        log_error "Install the issuing root CA into the container's system trust store (feature 'trusted_ca', or the host's proxy CA at ${PROXY_CA_FILE}); verification is never turned off."
        grep -iE "$TLS_ERROR_RE" "$STREAM_TAIL" | tail -n 3 | while IFS= read -r line; do
            log_error "  ${line}"
        done
        return 0
    fi
    return 1
}

# =====================================================================================
# Steps
# =====================================================================================
install_proxy_ca_certificate() {
    if [ -f "$PROXY_CA_FILE" ]; then
        log_info "Installing the host's proxy CA into CTID ${CTID}'s trust store..."
        pct_exec "$CTID" -- mkdir -p /usr/local/share/ca-certificates
        run_pct_push "$CTID" "$PROXY_CA_FILE" /usr/local/share/ca-certificates/proxy_ca.crt
        pct_exec "$CTID" -- update-ca-certificates >/dev/null
    fi
}

require_nvidia() {
    log_info "Verifying 'nvidia' feature dependency..."
    if ! is_feature_present_on_container "$CTID" "nvidia"; then
        log_fatal "The 'vllm' feature requires the 'nvidia' feature, which was not found for CTID ${CTID}."
    fi
    local gpus
    if ! gpus=$(pct_exec "$CTID" -- nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); then
        log_fatal "'nvidia-smi' does not work in CTID ${CTID}; the 'vllm' feature needs a functional NVIDIA driver."
    fi
    log_info "GPU(s) in CTID ${CTID}: ${gpus//$'\n'/; }"
}

# The raw TOML value of KEY in [SECTION] of the checked lock copy (vllm-lock writes one
# `key = value` a line); empty when absent.
lock_key() {
    awk -v section="[$1]" -v key="$2" '
        /^\[/ { in_section = ($0 == section); next }
        in_section && index($0, key " = ") == 1 { print substr($0, length(key) + 4); exit }
    ' "$HOST_LOCK"
}

# Does code for locked arch $1 run on a GPU of compute capability $2.$3? vllm-lock's rule
# (vllm_lock/cuda.py): the same major, and the same or an older minor (CUDA binary compatibility),
# except arch-specific `X.Ya` code, which runs only on exactly X.Y. vLLM drops PTX: no other major.
arch_covers() {
    local arch="$1" base
    base="${arch%[af]}"
    [ "${base%%.*}" -eq "$2" ] || return 1
    if [[ "$arch" == *a ]]; then
        [ "${base#*.}" -eq "$3" ]
    else
        [ "${base#*.}" -le "$3" ]
    fi
}

# Before anything is pushed: a CUDA lock must be able to run on the container's GPUs (otherwise
# a 15-45 minute build fails only at run time, "no kernel image") and its driver must support the
# lock's CUDA variant. Refused with exit 7 (vllm-lock's preflight code), naming what would fit. No
# GPU listed is a warning. The container's vllm-lock install checks the same again.
check_gpus_for_lock() {
    local device archs variant caps banner line cap name major minor uncovered=() fits=() arch covered
    device=$(lock_key build target-device)
    device="${device//\"/}"
    if [ "$device" != "cuda" ]; then
        log_info "Lock '${LOCK_NAME}' targets '${device}': no GPU arch check."
        return 0
    fi
    read -r -a archs <<<"$(lock_key build cuda-archs | grep -oE '[0-9]+\.[0-9]+[af]?' | tr '\n' ' ')"
    variant=$(lock_key inputs.torch.original cuda)
    variant="${variant//\"/}"
    if [ "${#archs[@]}" -eq 0 ] || [[ ! "$variant" =~ ^cu[0-9]{3}$ ]]; then
        log_warn "Lock '${LOCK_NAME}': archs or CUDA variant unreadable here; vllm-lock checks the GPUs in CTID ${CTID}."
        return 0
    fi
    caps=$(pct exec "$CTID" -- nvidia-smi --query-gpu=compute_cap,name --format=csv,noheader </dev/null 2>&1) || true
    if grep -qE "No devices were found|couldn't communicate with the NVIDIA driver" <<<"$caps"; then
        log_warn "No GPU visible in CTID ${CTID} ($(last_line "$caps")): the GPUs lock '${LOCK_NAME}' is for are not checked."
        return 0
    fi
    while IFS= read -r line; do
        [ -n "${line// /}" ] || continue
        cap="${line%%,*}"
        cap="${cap// /}"
        name="${line#*,}"
        name="${name# }"
        if [[ ! "$cap" =~ ^([0-9]+)\.([0-9]+)$ ]]; then
            log_error "Refusing lock '${LOCK_NAME}': cannot read the GPUs of CTID ${CTID}: nvidia-smi said $(printf '%q' "$line")."
            exit_script 7
        fi
        major="${BASH_REMATCH[1]}"
        minor="${BASH_REMATCH[2]}"
        covered=""
        for arch in "${archs[@]}"; do
            if arch_covers "$arch" "$major" "$minor"; then covered=1; fi
        done
        if [ -z "$covered" ]; then
            uncovered+=("${name} (sm_${cap/./})")
            fits+=("--arch ${cap}")
        fi
    done <<<"$caps"
    if [ "${#uncovered[@]}" -gt 0 ]; then
        log_error "Refusing lock '${LOCK_NAME}' for CTID ${CTID}: its archs ${archs[*]} do not cover $(IFS=,; echo "${uncovered[*]}"); the build would fail at run time (no kernel image). Resolve a lock with $(printf '%s\n' "${fits[@]}" | sort -u | tr '\n' ' ')for this container."
        exit_script 7
    fi
    banner=$(pct exec "$CTID" -- nvidia-smi </dev/null 2>/dev/null) || true
    if [[ "$banner" =~ CUDA\ Version:\ *([0-9]+)\.([0-9]+) ]]; then
        local have_major="${BASH_REMATCH[1]}" have_minor="${BASH_REMATCH[2]}" digits="${variant#cu}"
        local need_major="${digits:0:${#digits}-1}" need_minor="${digits: -1}"
        if [ "$have_major" -lt "$need_major" ] || { [ "$have_major" -eq "$need_major" ] && [ "$have_minor" -lt "$need_minor" ]; }; then
            log_error "Refusing lock '${LOCK_NAME}' for CTID ${CTID}: the driver supports CUDA up to ${have_major}.${have_minor}, the lock's torch is ${variant}: install a driver for CUDA >= ${need_major}.${need_minor} (the 'nvidia' feature's nvidia_driver_version)."
            exit_script 7
        fi
    fi
    log_info "GPU check for lock '${LOCK_NAME}' (archs ${archs[*]}, ${variant}): every GPU in CTID ${CTID} is covered."
}

already_installed() {
    local stamp
    stamp=$(pct exec "$CTID" -- cat "$STAMP_FILE" </dev/null 2>/dev/null) || return 1
    [ "$stamp" == "${LOCK_SHA} ${LOCK_NAME}" ] || return 1
    ct_probe "${VENV_DIR}/bin/vllm" --version || return 1
    ct_probe "$TOOL_BIN" verify "$CT_LOCK" --venv "$VENV_DIR" || return 1
    return 0
}

install_os_packages() {
    local status missing=() pkg
    status=$(pct exec "$CTID" -- dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${OS_PACKAGES[@]}" </dev/null 2>/dev/null) || true
    for pkg in "${OS_PACKAGES[@]}"; do
        if ! grep -qxF "installed ${pkg}" <<<"$status"; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log_info "OS packages already present: ${OS_PACKAGES[*]}"
        return 0
    fi
    log_info "Installing OS packages: ${missing[*]}"
    run_streaming apt env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
        log_fatal "apt-get update failed in CTID ${CTID}."
    run_streaming apt env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
        log_fatal "apt-get install ${missing[*]} failed in CTID ${CTID}."
}

# The checked copies go in; the container's lock and signature always form the host's pair.
push_lock() {
    pct_exec "$CTID" -- mkdir -p "$CT_LOCK_DIR" >/dev/null
    run_pct_push "$CTID" "$HOST_LOCK" "$CT_LOCK"
    if [ -f "$HOST_SIG" ]; then
        run_pct_push "$CTID" "$HOST_SIG" "${CT_LOCK}.sig"
    else
        pct_exec "$CTID" -- rm -f -- "${CT_LOCK}.sig" >/dev/null
    fi
    if [ -n "$TRUSTED_KEYS_FILE" ]; then
        run_pct_push "$CTID" "$TRUSTED_KEYS_FILE" "$CT_TRUSTED_KEYS"
    fi
}

install_vllm_lock_tool() {
    push_lock

    if [ -f "$VLLM_LOCK_BUNDLE" ]; then
        local bundle_sha current
        bundle_sha=$(sha256sum <"$VLLM_LOCK_BUNDLE" | cut -d' ' -f1)
        current=$(pct exec "$CTID" -- cat "$BUNDLE_STAMP" </dev/null 2>/dev/null) || current=""
        if [ "$current" == "$bundle_sha" ] && ct_probe "$TOOL_BIN" --help; then
            log_info "vllm-lock already installed in CTID ${CTID} from this bundle."
            return 0
        fi
        log_info "Installing vllm-lock into ${TOOL_VENV} from the offline bundle ${VLLM_LOCK_BUNDLE}..."
        run_pct_push "$CTID" "$VLLM_LOCK_BUNDLE" "${TOOL_DIR}/bundle.tar"
        # constant script; paths come in as positional arguments
        pct_exec "$CTID" -- sh -euc 'rm -rf "$1/bundle" "$1/venv" && mkdir "$1/bundle" &&
            tar -xf "$1/bundle.tar" -C "$1/bundle" && cd "$1/bundle" && sha256sum -c --quiet SHA256SUMS' \
            sh "$TOOL_DIR" >/dev/null || log_fatal "The vllm-lock bundle failed its checksums in CTID ${CTID}."
        pct_exec "$CTID" -- python3 -m venv "$TOOL_VENV" >/dev/null ||
            log_fatal "python3 -m venv failed in CTID ${CTID} (is python3-venv installed?)."
        run_streaming pip "${TOOL_VENV}/bin/pip" install --no-index --find-links "${TOOL_DIR}/bundle" \
            --disable-pip-version-check --progress-bar off vllm-lock ||
            log_fatal "Installing vllm-lock from the bundle failed in CTID ${CTID}."
        pct_exec "$CTID" -- sh -euc 'printf "%s\n" "$1" >"$2"' sh "$bundle_sha" "$BUNDLE_STAMP" >/dev/null
    else
        local spec="${VLLM_LOCK_PIP_SPEC:-vllm-lock}"
        log_warn "No offline bundle at ${VLLM_LOCK_BUNDLE}; installing '${spec}' from the container's package index."
        pct_exec "$CTID" -- python3 -m venv "$TOOL_VENV" >/dev/null ||
            log_fatal "python3 -m venv failed in CTID ${CTID} (is python3-venv installed?)."
        run_streaming pip "${TOOL_VENV}/bin/pip" install --cert "$SYSTEM_CA_BUNDLE" \
            --disable-pip-version-check --progress-bar off "$spec" || {
            explain_tls_failure || true
            log_fatal "Installing vllm-lock failed in CTID ${CTID}."
        }
    fi
}

# The lock's target Python must exist in the container (uv never downloads one here).
ensure_target_python() {
    local py
    py=$(pct exec "$CTID" -- "$TOOL_BIN" show "$CT_LOCK" --json </dev/null 2>/dev/null | jq -r '.target.python') ||
        log_fatal "Lock '${LOCK_NAME}' is not readable by vllm-lock in CTID ${CTID}."
    if [[ ! "$py" =~ ^3\.[0-9]{1,2}$ ]]; then
        log_fatal "Lock '${LOCK_NAME}' has an unexpected target Python $(printf '%q' "$py")."
    fi
    if ct_probe "python${py}" --version; then
        log_info "Target Python ${py} present in CTID ${CTID}."
        return 0
    fi
    log_info "Target Python ${py} missing in CTID ${CTID}; installing python${py} from apt..."
    run_streaming apt env DEBIAN_FRONTEND=noninteractive apt-get update -q || true
    run_streaming apt env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "python${py}" "python${py}-dev" "python${py}-venv" ||
        log_fatal "Python ${py} (target of lock '${LOCK_NAME}') is not installable in CTID ${CTID}; resolve a lock for the container's Python."
}

# Container side of the binary cache. The host looks the lock's build up (with its own network and
# credentials); a verified hit goes into the container as a one-entry file:// cache, which the
# container's vllm-lock checks again (trusted keys pushed in) and installs without compiling.
# Without a hit, and when this host signs, the install leaves its build in an outbox, signed with a
# throwaway key made in the container for this run (install --push needs one; nothing trusts it).
prepare_container_cache() {
    local out rc=0 line hit entry wheel_path signer
    [ -n "$CACHE_URL" ] || return 0
    INSTALL_CACHE_ARGS+=(--no-editable)  # the cache holds wheels; an editable install always builds
    pct_exec "$CTID" -- rm -rf -- "$CT_CACHE_DIR" "$CT_CACHE_KEYS" "$CT_OUTBOX" "$CT_OUTBOX_KEY" >/dev/null
    [ -n "$CACHE_TOOL" ] || return 0
    log_info "Looking up the build of lock '${LOCK_NAME}' in the binary cache ${CACHE_URL}..."
    rm -rf -- "${HOST_WORK}/lookup"
    out=$(host_vllm_lock cache fetch "$HOST_LOCK" --cache "$CACHE_URL" --trusted-cache-keys-file "$CACHE_KEYS_FILE" \
        -o "${HOST_WORK}/lookup") || rc=$?
    while IFS= read -r line; do
        if [ -n "$line" ] && [[ "$line" != "fetched "* && "$line" != "no cache has a verified build "* ]]; then
            log_info "[cache] ${line}"
        fi
    done <<<"$out"
    hit=$(grep '^fetched ' <<<"$out" | tail -n 1) || true
    read -r _ entry wheel_path signer <<<"$hit"
    if [ "$rc" -eq 0 ] && [[ "$entry" == "$ENTRY_NAME" && "$wheel_path" =~ ^wheels/[0-9a-f]{64}/[A-Za-z0-9._+-]+\.whl$ ]]; then
        pct_exec "$CTID" -- mkdir -p "${CT_CACHE_DIR}/${wheel_path%/*}" >/dev/null
        run_pct_push "$CTID" "$CACHE_KEYS_FILE" "$CT_CACHE_KEYS"
        run_pct_push "$CTID" "${HOST_WORK}/lookup/${wheel_path}" "${CT_CACHE_DIR}/${wheel_path}"
        run_pct_push "$CTID" "${HOST_WORK}/lookup/${entry}" "${CT_CACHE_DIR}/${entry}"  # the entry last
        rm -rf -- "${HOST_WORK}/lookup"
        CACHE_HIT="$signer"
        INSTALL_CACHE_ARGS+=(--cache "file://${CT_CACHE_DIR}" --trusted-cache-keys-file "$CT_CACHE_KEYS")
        log_info "Binary cache ${CACHE_URL} has a verified build of lock '${LOCK_NAME}' (${wheel_path##*/}, signed by ${signer}); pushed into CTID ${CTID}, which checks it again and installs it without compiling."
        return 0
    fi
    if [ "$rc" -eq 1 ]; then
        log_info "No verified build of lock '${LOCK_NAME}' in ${CACHE_URL}: CTID ${CTID} builds it."
    else
        log_warn "Binary cache lookup in ${CACHE_URL} failed ($(last_line "$out")): CTID ${CTID} builds."
    fi
    if [ -n "$CACHE_SIGNING" ]; then
        if pct_exec "$CTID" -- "$TOOL_BIN" key generate --name "outbox-${CTID}" -o "$CT_OUTBOX_KEY" >/dev/null; then
            INSTALL_CACHE_ARGS+=(--push "file://${CT_OUTBOX}" --cache-signing-key "$CT_OUTBOX_KEY")
        else
            log_warn "No outbox key in CTID ${CTID}: this build will not be published to ${CACHE_URL}."
        fi
    fi
}

# The lock's offline bundle goes in once (a stamp of its sha256 beside it) and is removed after a
# verified install: its contents are in the container's vllm-lock cache by then.
push_lock_bundle() {
    local sha current target="${CT_BUNDLE_DIR}/${LOCK_NAME}.tar"
    [ -n "$LOCK_BUNDLE" ] || return 0
    sha=$(sha256sum <"$LOCK_BUNDLE" | cut -d' ' -f1)
    current=$(pct exec "$CTID" -- cat "${target}.sha256" </dev/null 2>/dev/null) || current=""
    if [ "$current" == "$sha" ] && ct_probe test -f "$target"; then
        log_info "Offline bundle of lock '${LOCK_NAME}' already in CTID ${CTID}."
    else
        pct_exec "$CTID" -- mkdir -p "$CT_BUNDLE_DIR" >/dev/null
        pct_exec "$CTID" -- rm -f -- "${target}.sha256" >/dev/null
        run_pct_push "$CTID" "$LOCK_BUNDLE" "$target"
        pct_exec "$CTID" -- sh -euc 'printf "%s\n" "$1" >"$2"' sh "$sha" "${target}.sha256" >/dev/null
    fi
    INSTALL_CACHE_ARGS+=(--from-bundle "$target")
}

remove_lock_bundle() {
    [ -n "$LOCK_BUNDLE" ] || return 0
    pct_exec "$CTID" -- rm -f -- "${CT_BUNDLE_DIR}/${LOCK_NAME}.tar" "${CT_BUNDLE_DIR}/${LOCK_NAME}.tar.sha256" >/dev/null
}

# After a verified build: the wheel and entry the container left in its outbox come to the host
# (each read through `pct exec cat`, cut at its bound), are checked against the lock (identity,
# content hash, the wheel's size and sha256), signed with the host's key and published: the wheel
# first, the entry last. A failure is a warning: the verified install in the container stands.
publish_build() {
    local out entry wheel wheel_path size
    [ -n "$CACHE_SIGNING" ] && [ -n "$CACHE_TOOL" ] && [ -z "$CACHE_HIT" ] || return 0
    pct_exec "$CTID" -- rm -f -- "$CT_OUTBOX_KEY" >/dev/null
    if ! ct_probe test -f "${CT_OUTBOX}/${ENTRY_NAME}"; then
        log_warn "CTID ${CTID} left no build in ${CT_OUTBOX} (see its push line above): nothing published to ${CACHE_URL}."
        return 0
    fi
    mkdir -p "${HOST_WORK}/outbox"
    entry="${HOST_WORK}/outbox/${ENTRY_NAME}"
    # bounded in bytes and in time: a container that leaves a FIFO or drips its bytes cannot hold the host
    timeout "$OUTBOX_READ_SECONDS" pct exec "$CTID" -- cat -- "${CT_OUTBOX}/${ENTRY_NAME}" </dev/null 2>/dev/null |
        head -c "$((MAX_ENTRY_BYTES + 1))" >"$entry" || true
    if ! out=$(host_vllm_lock cache entry "$entry"); then
        log_warn "Not published: the entry CTID ${CTID} left is refused: $(last_line "$out")"
        return 0
    fi
    read -r wheel_path size <<<"$(last_line "$out")"
    if [[ ! "$wheel_path" =~ ^wheels/[0-9a-f]{64}/[A-Za-z0-9._+-]+\.whl$ || ! "$size" =~ ^[0-9]{1,12}$ ]] ||
        [ "$size" -gt "$MAX_BUILT_WHEEL_BYTES" ]; then
        log_warn "Not published: the entry CTID ${CTID} left names $(printf '%q' "$wheel_path") of $(printf '%q' "$size") bytes (at most ${MAX_BUILT_WHEEL_BYTES})."
        return 0
    fi
    if ! ct_probe test -f "${CT_OUTBOX}/${wheel_path}"; then
        log_warn "Not published: CTID ${CTID} left no regular file at ${CT_OUTBOX}/${wheel_path}."
        return 0
    fi
    wheel="${HOST_WORK}/outbox/${wheel_path}"
    mkdir -p "${wheel%/*}"
    timeout "$OUTBOX_READ_SECONDS" pct exec "$CTID" -- cat -- "${CT_OUTBOX}/${wheel_path}" </dev/null 2>/dev/null |
        head -c "$((size + 1))" >"$wheel" || true
    if out=$(host_vllm_lock cache publish "$HOST_LOCK" --from "${HOST_WORK}/outbox" --to "$CACHE_URL" \
        --cache-signing-key "$CACHE_SIGNING_KEY"); then
        log_success "Published the build of lock '${LOCK_NAME}' from CTID ${CTID} to ${CACHE_URL}: $(last_line "$out")."
    else
        log_warn "Publishing the build of lock '${LOCK_NAME}' from CTID ${CTID} to ${CACHE_URL} failed: $(last_line "$out"); the install in CTID ${CTID} stands."
    fi
    rm -rf -- "${HOST_WORK}/outbox"
    pct_exec "$CTID" -- rm -rf -- "$CT_OUTBOX" >/dev/null
}

# On a no-op rerun: when this host signs and its cache has no entry for the installed build (the
# first publish failed, or the cache was emptied since), the container's installed wheel is put in
# the outbox (`vllm-lock cache push`, throwaway key) and published as after a build.
republish_installed_build() {
    local out rc=0
    [ -n "$CACHE_SIGNING" ] && [ -n "$CACHE_TOOL" ] || return 0
    out=$(host_vllm_lock cache has "$HOST_LOCK" --cache "$CACHE_URL" --trusted-cache-keys-file "$CACHE_KEYS_FILE") || rc=$?
    [ "$rc" -eq 1 ] || return 0
    log_info "The binary cache ${CACHE_URL} has no build of lock '${LOCK_NAME}'; publishing the one installed in CTID ${CTID}."
    pct_exec "$CTID" -- rm -rf -- "$CT_OUTBOX" "$CT_OUTBOX_KEY" >/dev/null
    if ! out=$(pct exec "$CTID" -- "$TOOL_BIN" key generate --name "outbox-${CTID}" -o "$CT_OUTBOX_KEY" </dev/null 2>&1) ||
        ! out=$(pct exec "$CTID" -- "$TOOL_BIN" cache push "$CT_LOCK" --push "file://${CT_OUTBOX}" \
            --signing-key "$CT_OUTBOX_KEY" --venv "$VENV_DIR" --src "$SRC_DIR" </dev/null 2>&1); then
        log_warn "Not published: CTID ${CTID} could not put its installed build in ${CT_OUTBOX}: $(last_line "$out")"
        pct exec "$CTID" -- rm -rf -- "$CT_OUTBOX" "$CT_OUTBOX_KEY" </dev/null >/dev/null 2>&1 || true
        return 0
    fi
    publish_build
}

run_install() {
    if [ -n "$CACHE_HIT" ]; then
        log_info "Installing vLLM from lock '${LOCK_NAME}' into ${VENV_DIR} (source ${SRC_DIR}) with the cached build..."
    else
        log_info "Building vLLM from lock '${LOCK_NAME}' into ${VENV_DIR} (source ${SRC_DIR}); this can take a while..."
    fi
    if ! run_streaming vllm-lock env PATH="$CT_PATH" PYTHONUNBUFFERED=1 \
        "$TOOL_BIN" install "$CT_LOCK" --venv "$VENV_DIR" --src "$SRC_DIR" "${INSTALL_SIGNED_ARGS[@]}" \
        "${INSTALL_CACHE_ARGS[@]}"; then
        explain_tls_failure || true
        log_fatal "vllm-lock install failed in CTID ${CTID}; fix the cause and rerun the feature to resume."
    fi
    if [ -n "$CACHE_HIT" ]; then
        if [ -s "${STREAM_TAIL}.substituted" ]; then
            log_info "vLLM for lock '${LOCK_NAME}' in CTID ${CTID} substituted from ${CACHE_URL} (signed by ${CACHE_HIT}): nothing was compiled."
        else
            log_warn "CTID ${CTID} refused the build from ${CACHE_URL} (see its lines above) and built vLLM itself."
        fi
    fi
}

verify_install() {
    local version
    version=$(pct_exec "$CTID" -- "${VENV_DIR}/bin/vllm" --version) ||
        log_fatal "'${VENV_DIR}/bin/vllm --version' failed in CTID ${CTID}."
    log_info "vllm --version: ${version}"
    pct_exec "$CTID" -- "${VENV_DIR}/bin/python" -c \
        'import importlib.util, sys; sys.exit(importlib.util.find_spec("vllm.entrypoints.openai.api_server") is None)' ||
        log_fatal "vllm.entrypoints.openai.api_server does not resolve with ${VENV_DIR}/bin/python in CTID ${CTID}."
    run_streaming verify "$TOOL_BIN" verify "$CT_LOCK" --venv "$VENV_DIR" ||
        log_fatal "vllm-lock verify reports drift from lock '${LOCK_NAME}' in CTID ${CTID}."
    pct_exec "$CTID" -- sh -euc 'printf "%s %s\n" "$1" "$2" >"$3"' sh "$LOCK_SHA" "$LOCK_NAME" "$STAMP_FILE" >/dev/null
}

main() {
    if [ "$#" -lt 1 ]; then
        log_error "Usage: $(basename "$0") <CTID> [bootstrap_ca_url]"
        exit_script 2
    fi
    validate_ctid "$1"
    CTID="$1"
    # without jq every config lookup would silently read as "absent"
    command -v jq >/dev/null 2>&1 || log_fatal "jq is required on the host to read ${LXC_CONFIG_FILE:-phoenix_lxc_configs.json}."
    check_config_json
    # $2 (bootstrap_ca_url) is accepted and not used: trust comes from the trusted_ca feature.

    HOST_WORK=$(mktemp -d)
    trap 'rm -rf -- "$HOST_WORK"' EXIT
    STREAM_TAIL="${HOST_WORK}/stream-tail"
    configure_signature_checks
    choose_lock
    read_cache_setting
    choose_lock_bundle
    check_lock_signature
    validate_lock_on_host
    configure_binary_cache

    log_info "Starting vLLM installation in CTID ${CTID} from lock '${LOCK_NAME}'."
    install_proxy_ca_certificate
    require_nvidia
    check_gpus_for_lock
    if already_installed; then
        republish_installed_build
        log_success "vLLM from lock '${LOCK_NAME}' is already installed and verified in CTID ${CTID}; nothing to do."
        exit_script 0
    fi
    install_os_packages
    install_vllm_lock_tool
    ensure_target_python
    prepare_container_cache
    push_lock_bundle
    run_install
    verify_install
    remove_lock_bundle
    publish_build
    log_success "vLLM installed from lock '${LOCK_NAME}' in CTID ${CTID} and verified."
    exit_script 0
}

# Sourcing the script (tests) defines the functions without running anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
