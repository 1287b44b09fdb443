#!/usr/bin/env bash
# Build a stand-in for the Lambda base image public.ecr.aws/lambda/python:3.13-<arch> from
# Debian's own packages, for machines that reach Debian and PyPI but no container registry.
#
#   scripts/lambda-base-image.sh ARCH IMAGE_NAME OUTPUT.tar     (ARCH: arm64 | x86_64; root)
#
# What goes in, and why it is close enough to the real image for `sam local`:
# - Debian trixie's python3.13 (3.13.5 with Debian's security fixes; the real image runs the
#   latest 3.13.x on Amazon Linux 2023) and the C libraries it and awslambdaric link to, unpacked
#   with mmdebstrap's extract variant: no maintainer script runs, so nothing executes under
#   emulation and the root file system takes seconds to make.
# - awslambdaric from PyPI: the same Runtime Interface Client the real runtime speaks the Lambda
#   Runtime API with; /var/runtime/bootstrap starts it with the handler, as the real one does.
# - boto3/botocore and their dependencies in /var/runtime, pinned below, as the runtime provides
#   them; functions import them from there unless they ship their own.
# - The search path of the real runtime: the function (/var/task), then layers (/opt/python),
#   then the runtime's libraries (/var/runtime).
# SAM adds its own copy of the Runtime Interface Emulator and the layers on top, as it does to
# the real image. The recipe's hash (this file) labels the image, so a changed pin rebuilds it.
set -euo pipefail

ARCH=${1:?usage: lambda-base-image.sh arm64|x86_64 IMAGE OUTPUT.tar}
IMAGE=${2:?image name}
OUTPUT=${3:?output tarball}
cd "$(dirname "$0")/.."

SUITE=trixie
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_PACKAGES=python3.13,libstdc++6,dash,coreutils,base-files,base-passwd,tzdata
# PyPI pins, checked on 2026-11-27. AWS no longer publishes which boto3 the python3.13 runtime
# carries (its docs say to print boto3.__version__ from a function), and no image or account is
# reachable from these machines: so boto3/botocore are the oldest the project supports
# (pyproject: boto3>=1.40), and the workflow's run on the real image prints the real versions.
RUNTIME_PINS=(
    awslambdaric==4.2.2 simplejson==4.3.0 snapshot-restore-py==1.0.0
    boto3==1.40.0 botocore==1.40.0 s3transfer==0.13.1 jmespath==1.1.0
    python-dateutil==2.9.0.post0 six==1.17.0 urllib3==2.8.0
)
PY=${PYTHON313:-.venv/bin/python}

case "$ARCH" in
    arm64) DEB_ARCH=arm64 WHEEL_PLATFORM=manylinux2014_aarch64 ;;
    x86_64) DEB_ARCH=amd64 WHEEL_PLATFORM=manylinux2014_x86_64 ;;
    *) echo "lambda-base-image: unknown architecture $ARCH" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "lambda-base-image: needs root (mmdebstrap --mode=root)" >&2; exit 1; }
RECIPE=$(sha256sum "$0" | cut -c1-16)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"

echo "lambda-base-image: Debian $SUITE ($DEB_ARCH) from $MIRROR: ${DEBIAN_PACKAGES//,/ }"
mmdebstrap --quiet --mode=root --variant=extract --architectures="$DEB_ARCH" \
    --include="$DEBIAN_PACKAGES" "$SUITE" "$root" "$MIRROR"

echo "lambda-base-image: /var/runtime from PyPI: ${RUNTIME_PINS[*]}"
"$PY" -m pip install --quiet --disable-pip-version-check --no-compile --no-deps \
    --only-binary=:all: --platform "$WHEEL_PLATFORM" --python-version 3.13 --implementation cp \
    --target "$root/var/runtime" "${RUNTIME_PINS[@]}" 2> >(grep -v "is ignored" >&2)
rm -rf "$root/var/runtime/bin"

cat > "$root/var/runtime/bootstrap" <<'EOF'
#!/bin/sh
# The Lambda Runtime Interface Emulator starts this with _HANDLER set (module.function).
export AWS_EXECUTION_ENV=AWS_Lambda_python3.13
export PYTHONPATH="/var/task:/opt/python/lib/python3.13/site-packages:/opt/python:/var/runtime"
exec /usr/bin/python3.13 -m awslambdaric "${_HANDLER:-$AWS_LAMBDA_FUNCTION_HANDLER}"
EOF
cat > "$root/lambda-entrypoint.sh" <<'EOF'
#!/bin/sh
# As the real image's entry point: the handler as the command; under the emulator when no
# Runtime API is given (sam local replaces this entry point with its own emulator anyway).
[ -n "${1:-}" ] && export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ] && [ -x /usr/local/bin/aws-lambda-rie ]; then
    exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap
fi
exec /var/runtime/bootstrap
EOF
chmod 755 "$root/var/runtime/bootstrap" "$root/lambda-entrypoint.sh"
printf 'root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/home/sbx_user1051:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nsbx_user1051:x:990:\nnogroup:x:65534:\n' > "$root/etc/group"
mkdir -p "$root/var/task" "$root/opt" "$root/tmp"
chmod 1777 "$root/tmp"
# Bytecode compiled here (same 3.13 magic), so nothing compiles under emulation at each start.
"$PY" -m compileall -q -j0 "$root/usr/lib/python3.13" "$root/var/runtime" > /dev/null || true

mkdir -p "$work/context"
tar -C "$root" --numeric-owner -cf "$work/context/rootfs.tar" .
cat > "$work/context/Dockerfile" <<EOF
FROM scratch
ADD rootfs.tar /
ENV LANG=C.UTF-8 TZ=:/etc/localtime PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin \\
    LD_LIBRARY_PATH=/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib \\
    LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime
LABEL support-pipeline.stand-in="$RECIPE-$ARCH" \\
    org.opencontainers.image.description="Stand-in for $IMAGE from Debian $SUITE packages and PyPI (scripts/lambda-base-image.sh)"
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
EOF
DOCKER_BUILDKIT=0 docker build --quiet --platform "linux/$ARCH" -t "$IMAGE" "$work/context" \
    > "$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
mkdir -p "$(dirname "$OUTPUT")"
docker save -o "$OUTPUT.partial" "$IMAGE"
mv "$OUTPUT.partial" "$OUTPUT"
echo "lambda-base-image: built $IMAGE (stand-in $RECIPE-$ARCH), cached as $OUTPUT"
