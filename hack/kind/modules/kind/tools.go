//go:build tools

// Package kind pins the kind CLI; its module also carries the files of kind's
// base image (images/base/files), which the offline node image reuses.
package kind

import _ "sigs.k8s.io/kind"
