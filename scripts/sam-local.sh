#!/usr/bin/env bash
# `make sam-local`: the built functions in Lambda containers through SAM itself.
#
# 1. Docker: use the daemon that answers; else (Debian, root or sudo) install docker.io and
#    start dockerd in the background, and stop it by its pid on every exit path.
# 2. Architecture: the template's arm64, natively or under qemu-user-static (binfmt); where
#    neither is possible, the host's architecture through the template's Architecture parameter.
# 3. Base image public.ecr.aws/lambda/python:3.13-<arch>: the one Docker has, else a pull of the
#    real one, else the stand-in of scripts/lambda-base-image.sh (cached as a tarball in .cache/).
# 4. sam build, then scripts/sam_local_check.py: `sam local invoke` of every function on every
#    events/ sample and `sam local start-api` with signed and bad posts, against moto.
#
# Settings (environment): SAM_LOCAL_ARCH=auto|arm64|x86_64, SAM_LOCAL_BASE=auto|real|stand-in.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=.cache/sam-local
SAM=.venv-tools/bin/sam
PY=.venv/bin/python
WANT_ARCH=${SAM_LOCAL_ARCH:-auto}
WANT_BASE=${SAM_LOCAL_BASE:-auto}
mkdir -p "$WORK"
export SAM_CLI_TELEMETRY=0

t0=$(date +%s)
phase() { printf '\n== [%4ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
die() { echo "sam-local: FAILED: $*" >&2; exit 1; }

# ---- every exit path stops what this script started ---------------------------------------
DOCKERD_PID=""
CONTAINERD_PID=""
CHILD=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    if [ -n "$DOCKERD_PID" ]; then
        phase "stopping dockerd (pid $DOCKERD_PID)"
        kill -TERM "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            echo "dockerd did not stop in 30 s: SIGKILL"
            kill -KILL "$DOCKERD_PID" 2>/dev/null || true
        fi
        wait "$DOCKERD_PID" 2>/dev/null || true
        if [ -n "$CONTAINERD_PID" ] && kill -0 "$CONTAINERD_PID" 2>/dev/null; then
            kill -TERM "$CONTAINERD_PID" 2>/dev/null || true
            for _ in $(seq 1 20); do kill -0 "$CONTAINERD_PID" 2>/dev/null || break; sleep 0.5; done
        fi
        echo "dockerd stopped"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A long step runs in the background so a signal is handled at once (bash runs traps only
# between commands, and `wait` is interruptible).
run() {
    "$@" &
    CHILD=$!
    local status=0
    wait "$CHILD" || status=$?
    CHILD=""
    return "$status"
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif sudo -n true 2>/dev/null; then sudo -n "$@"
    else return 1
    fi
}

APT_UPDATED=""
need_packages() {  # Debian packages, installed only when missing
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get > /dev/null || die "needs ${missing[*]} and this is not a Debian-like system"
    echo "installing ${missing[*]} (Debian packages)"
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq || die "apt-get update failed (root or sudo needed)"
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > "$WORK/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed: see $WORK/apt.log"
}

# ---- 1. Docker -----------------------------------------------------------------------------
phase "Docker"
if docker info > /dev/null 2>&1; then
    echo "using the Docker daemon that is already running ($(docker version -f '{{.Server.Version}}'))"
else
    [ "$(id -u)" = 0 ] || die "no Docker daemon runs, and starting one needs root"
    command -v dockerd > /dev/null || need_packages docker.io
    # --userland-proxy=false: a published port accepts connections only once the container
    # listens (the proxy would accept at once, and SAM would post before the emulator is up).
    dockerd --userland-proxy=false > "$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 120); do
        docker info > /dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || die "dockerd exited: $(tail -n 3 "$WORK/dockerd.log" | tr '\n' ' ')"
        sleep 0.5
    done
    docker info > /dev/null 2>&1 || die "dockerd did not answer within 60 s (see $WORK/dockerd.log)"
    CONTAINERD_PID=$(cat /var/run/docker/containerd/containerd.pid 2>/dev/null || true)
    echo "started dockerd $(docker version -f '{{.Server.Version}}') in the background (pid $DOCKERD_PID); it is stopped on exit"
fi

# ---- 2. Architecture -----------------------------------------------------------------------
binfmt_ready() {
    local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    [ -r "$entry" ] && grep -q '^enabled' "$entry" && grep -q '^flags:.*F' "$entry"
}
enable_arm64_emulation() {
    binfmt_ready && return 0
    [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null || return 1
    need_packages qemu-user-static || return 1
    if ! [ -e /proc/sys/fs/binfmt_misc/register ]; then
        as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2> /dev/null || return 1
    fi
    # Debian's entry has the F flag: the interpreter is opened now, so it works in containers.
    if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        echo -1 | as_root tee /proc/sys/fs/binfmt_misc/qemu-aarch64 > /dev/null || return 1
    fi
    as_root sh -c 'cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register' || return 1
    binfmt_ready
}

phase "Architecture"
HOST_ARCH=$(uname -m)
EMULATED=""
case "$WANT_ARCH:$HOST_ARCH" in
    auto:aarch64 | arm64:aarch64) ARCH=arm64; why="natively (the host is arm64)" ;;
    auto:* | arm64:*)
        if enable_arm64_emulation; then
            ARCH=arm64 EMULATED=1
            why="under emulation (qemu-user-static through binfmt_misc, on a $HOST_ARCH host)"
        elif [ "$WANT_ARCH" = arm64 ]; then
            die "SAM_LOCAL_ARCH=arm64 but this $HOST_ARCH machine cannot emulate arm64 (qemu-user-static, binfmt_misc)"
        else
            ARCH=x86_64; why="for the host instead: this machine cannot emulate arm64 (no binfmt_misc/qemu)"
        fi ;;
    x86_64:x86_64) ARCH=x86_64; why="for the host (SAM_LOCAL_ARCH=x86_64)" ;;
    *) die "SAM_LOCAL_ARCH=$WANT_ARCH is not possible on a $HOST_ARCH host" ;;
esac
echo "architecture: $ARCH, $why"
BUILD_DIR=.aws-sam/build
OVERRIDES=()
BUILD_ARGS=()
if [ "$ARCH" != arm64 ]; then
    # The template's Architecture parameter; a build of its own, never mixed with the arm64 one.
    BUILD_DIR=.aws-sam/build-$ARCH
    OVERRIDES=(Architecture="$ARCH")
    BUILD_ARGS=(--parameter-overrides "Architecture=$ARCH" --no-cached)
fi

# ---- 3. The Lambda base image --------------------------------------------------------------
phase "Lambda base image"
IMAGE=public.ecr.aws/lambda/python:3.13-$ARCH
RECIPE=$(sha256sum scripts/lambda-base-image.sh | cut -c1-16)
CACHE=$WORK/lambda-python3.13-$ARCH-$RECIPE.tar
BASE=""
if label=$(docker image inspect -f '{{index .Config.Labels "support-pipeline.stand-in"}}' "$IMAGE" 2>/dev/null); then
    if [ -z "$label" ] || [ "$label" = "<no value>" ]; then
        [ "$WANT_BASE" = stand-in ] && die "SAM_LOCAL_BASE=stand-in but Docker holds the real $IMAGE"
        BASE="real AWS image (already in Docker)"
    elif [ "$label" = "$RECIPE-$ARCH" ] && [ "$WANT_BASE" != real ]; then
        BASE="stand-in built from Debian packages (already in Docker)"
    else
        echo "removing an out-of-date stand-in ($label)"
        docker image rm -f "$IMAGE" > /dev/null
    fi
fi
if [ -z "$BASE" ] && [ "$WANT_BASE" != stand-in ]; then
    echo "pulling $IMAGE ..."
    if timeout 300 docker pull --platform "linux/$ARCH" "$IMAGE" > "$WORK/pull.log" 2>&1; then
        BASE="real AWS image (pulled)"
    else
        [ "$WANT_BASE" = real ] && die "cannot pull $IMAGE: $(tail -n 1 "$WORK/pull.log")"
        echo "cannot pull it: $(tail -n 1 "$WORK/pull.log" | cut -c1-160)"
    fi
fi
if [ -z "$BASE" ] && [ -f "$CACHE" ]; then
    docker load -i "$CACHE" > /dev/null && BASE="stand-in built from Debian packages (loaded from $CACHE)"
fi
if [ -z "$BASE" ]; then
    echo "building the stand-in from Debian's packages (no registry needed)"
    command -v mmdebstrap > /dev/null || need_packages mmdebstrap
    rm -f "$WORK"/lambda-python3.13-"$ARCH"-*.tar
    run scripts/lambda-base-image.sh "$ARCH" "$IMAGE" "$CACHE" || die "building the stand-in base image failed"
    BASE="stand-in built from Debian packages (built now, cached as $CACHE)"
fi
probe=$(docker run --rm --platform "linux/$ARCH" --entrypoint python3.13 -e PYTHONPATH=/var/runtime "$IMAGE" \
    -c 'import platform, boto3, botocore; print(platform.machine(), platform.python_version(), "boto3", boto3.__version__, "botocore", botocore.__version__)' 2>&1) \
    || die "the base image does not run here: $(echo "$probe" | tail -n 1)"
echo "base image: $IMAGE: $BASE"
echo "in it: $probe"
printf 'image=%s\nbase=%s\narch=%s\nwhy=%s\nprobe=%s\n' "$IMAGE" "$BASE" "$ARCH" "$why" "$probe" > "$WORK/base-image.txt"

# ---- 4. sam build, then the checks ---------------------------------------------------------
phase "sam build ($ARCH)"
run "$SAM" build --build-dir "$BUILD_DIR" ${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"} > "$WORK/sam-build.log" 2>&1 \
    || die "sam build failed: $(tail -n 5 "$WORK/sam-build.log" | tr '\n' ' ')"
echo "built into $BUILD_DIR"

phase "sam local invoke and sam local start-api"
check_args=(--build-dir "$BUILD_DIR" --sam "$SAM" --log "$WORK/sam-local.log")
[ -n "$EMULATED" ] && check_args+=(--emulated)
for override in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do check_args+=(--parameter-override "$override"); done
run "$PY" scripts/sam_local_check.py "${check_args[@]}" || die "the sam local checks failed (above; log: $WORK/sam-local.log)"

leftover=$(docker ps -aq --filter label=sam.cli.container.type=lambda)
if [ -n "$leftover" ]; then
    echo "removing containers SAM left: $leftover"
    # shellcheck disable=SC2086
    docker rm -f $leftover > /dev/null
fi
phase "sam-local passed: $ARCH ($why); base image: $BASE"
