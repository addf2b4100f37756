// Image references as users write them ("alpine", "ghcr.io/acme/app:1.2",
// "127.0.0.1:5000/x@sha256:..."), normalised the way containerd and docker
// do before a pull. Pure; no I/O.
#pragma once

#include "pullgate/registry_name.hpp"

#include <boost/system/result.hpp>

#include <string>
#include <string_view>

namespace pullgate {

struct image_ref {
    registry_name registry;  // docker.io when the reference names no registry
    std::string repository;  // "library/alpine" for Docker Hub official images
    std::string tag;         // "latest" when neither tag nor digest is given
    std::string digest;      // "" or "sha256:..."

    // registry/repository[:tag][@digest], e.g. "docker.io/library/alpine:latest"
    std::string canonical() const;
};

// The first path component is the registry when it contains '.' or ':' or
// is "localhost"; otherwise the image is on Docker Hub, and a single-component
// Docker Hub name gets the "library/" prefix. Fails with a message for
// anything containerd would refuse (uppercase repository, bad tag/digest).
boost::system::result<image_ref, std::string> parse_image_ref(std::string_view text);

}  // namespace pullgate
