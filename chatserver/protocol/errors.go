package protocol

import "strings"

// Error codes. Each has one meaning wherever it appears: in a WebSocket
// "error" object, in an HTTP error body ({"error":{"code","message"}}), or
// only as a label of hubbub_errors_total{code} for a refusal that closes
// the socket (its close code tells the client). Errors lists them all, for
// the docs (a test checks docs/protocol.md names every one) and metrics.
const (
	CodeBadRequest           = "bad_request"
	CodeTooLarge             = "too_large"
	CodeRateLimited          = "rate_limited"
	CodeUnknownChannel       = "unknown_channel"
	CodeForbidden            = "forbidden"
	CodeUnavailable          = "unavailable"
	CodeUnauthorized         = "unauthorized"
	CodeInvalidCredentials   = "invalid_credentials"
	CodeUsernameTaken        = "username_taken"
	CodeChannelTaken         = "channel_taken"
	CodeLimitReached         = "limit_reached"
	CodeLastAdmin            = "last_admin"
	CodeUnknownUser          = "unknown_user"
	CodeRegistrationClosed   = "registration_closed"
	CodeBadOrigin            = "bad_origin"
	CodeNotFound             = "not_found"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeInternal             = "internal"
	CodeServerFull           = "server_full"
	CodeTooManyConnections   = "too_many_connections"
	CodeFlooding             = "flooding"
	CodeWriteTimeout         = "write_timeout"
	CodeUnknownMessage       = "unknown_message"
)

// LabelInvalid labels hubbub_frames_in_total for a frame of no known type.
const LabelInvalid = "invalid"

// Carrier says what carries an error code to a client.
type Carrier uint8

// Carriers of error codes.
const (
	InFrame   Carrier = 1 << iota // a WebSocket "error" object
	InHTTP                        // an HTTP error body
	OnlyCount                     // nothing: a close code tells the client; hubbub_errors_total counts it
)

// String names c's carriers the way docs/protocol.md does: "WebSocket, HTTP".
func (c Carrier) String() string {
	var out []string
	for _, n := range []struct {
		c    Carrier
		name string
	}{{InFrame, "WebSocket"}, {InHTTP, "HTTP"}, {OnlyCount, "metric"}} {
		if c&n.c != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ", ")
}

// ErrorInfo describes an error code.
type ErrorInfo struct {
	Code string
	By   Carrier
}

// Errors is every error code, in the order docs/protocol.md lists them.
var Errors = []ErrorInfo{
	{CodeBadRequest, InFrame | InHTTP},
	{CodeTooLarge, InFrame | InHTTP},
	{CodeRateLimited, InFrame | InHTTP},
	{CodeUnknownChannel, InFrame | InHTTP},
	{CodeForbidden, InFrame | InHTTP},
	{CodeUnknownMessage, InFrame | InHTTP},
	{CodeUnavailable, InFrame | InHTTP},
	{CodeUnauthorized, InHTTP},
	{CodeInvalidCredentials, InHTTP},
	{CodeUsernameTaken, InHTTP},
	{CodeChannelTaken, InHTTP},
	{CodeLimitReached, InHTTP},
	{CodeLastAdmin, InHTTP},
	{CodeUnknownUser, InHTTP},
	{CodeRegistrationClosed, InHTTP},
	{CodeBadOrigin, InHTTP},
	{CodeNotFound, InHTTP},
	{CodeUnsupportedMediaType, InHTTP},
	{CodeInternal, InHTTP},
	{CodeServerFull, OnlyCount},
	{CodeTooManyConnections, OnlyCount},
	{CodeFlooding, OnlyCount},
	{CodeWriteTimeout, OnlyCount},
}
