# deps.sh: sourced by the scripts; installs the Debian packages smil builds against when missing.
# Needs root (or sudo) only when something is missing.

smil_require_packages() {
    local needed=(libopenblas-dev libreadline-dev libpng-dev libjpeg-dev pkg-config
                  libopenslide-dev libtiff-dev libhdf5-dev)
    local missing=()
    for p in "${needed[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "smil: installing Debian packages: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

smil_require_swift() {
    command -v swift >/dev/null || { echo "smil: the Swift toolchain (swift) is not on PATH" >&2; exit 1; }
}
