#!/bin/bash
# Stand-in for Phoenix Hypervisor's bin/phoenix_hypervisor_common_utils.sh, implementing the
# documented contract (../../../shared/docs/phoenix-contract.md) that feature scripts rely on:
# timestamped "[LEVEL] <script>:" log lines on stderr appended to the main log, pct_exec's
# capture-then-print behaviour, run_pct_push, jq_get_value/jq_get_array with a root fallback,
# is_feature_present_on_container through clone_from_ctid parents, exit_script.
# Test-only overrides: MAIN_LOG_FILE and LXC_CONFIG_FILE may be set in the environment.

set -e
set -o pipefail

export MAIN_LOG_FILE="${MAIN_LOG_FILE:-/var/log/phoenix_hypervisor.log}"
export LXC_CONFIG_FILE="${LXC_CONFIG_FILE:-/usr/local/phoenix_hypervisor/etc/phoenix_lxc_configs.json}"

_phoenix_log() {
    local level="$1"
    shift
    echo "$(date '+%Y-%m-%d %H:%M:%S') [$level] $(basename "$0"): $*" | tee -a "$MAIN_LOG_FILE" >&2
}

log_debug() { if [ "${PHOENIX_DEBUG:-}" == "true" ]; then _phoenix_log DEBUG "$@"; fi; }
log_info() { _phoenix_log INFO "$@"; }
log_success() { _phoenix_log SUCCESS "$@"; }
log_warn() { _phoenix_log WARN "$@"; }
log_error() { _phoenix_log ERROR "$@"; }
log_fatal() {
    _phoenix_log FATAL "$@"
    exit 1
}

exit_script() {
    local exit_code="$1"
    if [ "$exit_code" -eq 0 ]; then
        log_info "Script completed successfully."
    else
        log_error "Script failed with exit code $exit_code."
    fi
    exit "$exit_code"
}

# Runs a command in the container; captures ALL output and prints it only when the command ends.
pct_exec() {
    local ctid="$1"
    shift
    if [[ "${1:-}" == "--" ]]; then
        shift
    fi
    log_info "Executing command from host in CTID $ctid: $*"
    local output
    local exit_code=0
    output=$(pct exec "$ctid" -- "$@" 2>&1) || exit_code=$?
    if [ "$exit_code" -ne 0 ]; then
        log_error "Command failed in CTID $ctid with exit code $exit_code: '$*'"
        log_error "Output:
$output"
        return "$exit_code"
    fi
    echo "$output"
    return 0
}

run_pct_push() {
    local ctid="$1" src="$2" dst="$3"
    log_info "Pushing '$src' to CTID $ctid at '$dst'"
    local output
    local exit_code=0
    output=$(pct push "$ctid" "$src" "$dst" 2>&1) || exit_code=$?
    if [ "$exit_code" -ne 0 ]; then
        log_error "'pct push $ctid $src $dst' failed with exit code $exit_code: $output"
        return 1
    fi
    return 0
}

jq_get_value() {
    local ctid="$1" jq_query="$2" value
    value=$(jq -r --arg ctid "$ctid" ".lxc_configs[\$ctid | tostring] | ${jq_query}" "$LXC_CONFIG_FILE") || return 1
    if [ -z "$value" ] || [ "$value" == "null" ]; then
        value=$(jq -r "${jq_query}" "$LXC_CONFIG_FILE" 2>/dev/null) || return 1
    fi
    if [ -z "$value" ] || [ "$value" == "null" ]; then
        return 1
    fi
    echo "$value"
}

jq_get_array() {
    local ctid="$1" jq_query="$2" values
    values=$(jq -r --arg ctid "$ctid" ".lxc_configs[\$ctid | tostring] | ${jq_query}" "$LXC_CONFIG_FILE") || return 1
    if [ -z "$values" ] || [ "$values" == "null" ]; then
        return 1
    fi
    echo "$values"
}

is_feature_present_on_container() {
    local ctid="$1" feature="$2" parent
    if jq -e --arg ctid "$ctid" --arg f "$feature" \
        '(.lxc_configs[$ctid].features // []) | index($f) != null' "$LXC_CONFIG_FILE" >/dev/null; then
        return 0
    fi
    parent=$(jq -r --arg ctid "$ctid" '.lxc_configs[$ctid].clone_from_ctid // empty' "$LXC_CONFIG_FILE")
    if [ -n "$parent" ] && [ "$parent" != "$ctid" ]; then
        is_feature_present_on_container "$parent" "$feature"
        return $?
    fi
    return 1
}

is_command_available() {
    command -v "$1" >/dev/null 2>&1
}
