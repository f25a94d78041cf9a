#!/usr/bin/env bash
# Replaces proto/ with the proto tree of an envoy-types release from crates.io.
set -euo pipefail
version=${1:?usage: update-protos.sh ENVOY_TYPES_VERSION}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL "https://static.crates.io/crates/envoy-types/envoy-types-${version}.crate" | tar xz -C "$tmp"
src="$tmp/envoy-types-${version}"
keep_readme=$(cat "$here/proto/README.md")
mv "$here/proto/xds-schema" "$tmp/xds-schema"
rm -rf "$here/proto"
cp -r "$src/proto" "$here/proto"
cp "$src/LICENSE" "$here/proto/LICENSE"
mv "$tmp/xds-schema" "$here/proto/xds-schema"
printf '%s\n' "$keep_readme" > "$here/proto/README.md"
sed -i 's/^    common\.dynamic_forward_proxy\.v3\.DnsCacheConfig dns_cache_config = 1;/    envoy.extensions.common.dynamic_forward_proxy.v3.DnsCacheConfig dns_cache_config = 1;/' \
  "$here/proto/data-plane-api/envoy/extensions/clusters/dynamic_forward_proxy/v3/cluster.proto"
echo "proto/ now holds envoy-types ${version}; update the version in proto/README.md"
