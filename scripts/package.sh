#!/bin/sh
# Builds the two shipping artifacts from this tree:
#   dist/pullgate_<version>_<arch>.deb   (dpkg-buildpackage -us -uc -b)
#   dist/pullgate-<version>.oci.tar      (OCI image archive, from the .deb's binary)
# The build runs in a copy of the tree at a fixed path under build/package/,
# so dpkg-buildpackage writes nothing outside the tree and ccache
# (CMAKE_CXX_COMPILER_LAUNCHER=ccache, set here when ccache is installed)
# finds its objects again on the next run.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

version=$(sed -n 's/^project(pullgate VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
changelog=$(dpkg-parsechangelog -S Version)
if [ "$version" != "$changelog" ]; then
    echo "package.sh: CMakeLists.txt says $version, debian/changelog says $changelog" >&2
    exit 1
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
if [ -z "${CMAKE_CXX_COMPILER_LAUNCHER:-}" ] && command -v ccache >/dev/null; then
    export CMAKE_CXX_COMPILER_LAUNCHER=ccache
fi

work="$top/build/package"
src="$work/pullgate-$version"
mkdir -p "$work" dist
rm -rf "$src" "$work"/pullgate_* "$work"/pullgate-dbgsym_*
mkdir -p "$src"
# The tracked and untracked-but-not-ignored files, as the tree is now.
git ls-files -z --cached --others --exclude-standard -- . ':!dist' |
    (cd "$top" && xargs -0 tar -cf - --no-recursion --ignore-failed-read) | tar -xf - -C "$src"

(cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b)

deb="pullgate_${version}_${arch}.deb"
cp "$work/$deb" "dist/$deb"

# The image takes the binary exactly as the package ships it.
root="$work/debroot"
rm -rf "$root"
dpkg-deb -x "dist/$deb" "$root"
python3 scripts/oci-image.py --binary "$root/usr/bin/pullgate" --version "$version" \
    --config "$root/etc/pullgate/config.yaml" --output "dist/pullgate-$version.oci.tar"

ls -l "dist/$deb" "dist/pullgate-$version.oci.tar"
