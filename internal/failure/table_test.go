package failure

import (
	"testing"

	"google.golang.org/grpc/codes"
)

func TestCodeOfAnswer(t *testing.T) {
	// The whole table, including statuses no example above exercises.
	tests := []struct {
		status int
		code   string
		want   codes.Code
	}{
		{400, "", codes.InvalidArgument}, {401, "", codes.Unauthenticated}, {403, "", codes.PermissionDenied},
		{404, "", codes.NotFound}, {409, "", codes.Aborted}, {409, "DUPLICATE", codes.AlreadyExists},
		{409, "resource_already_exists", codes.AlreadyExists}, {429, "", codes.ResourceExhausted},
		{500, "", codes.Internal}, {501, "", codes.Unimplemented}, {502, "", codes.Unavailable},
		{503, "", codes.Unavailable}, {504, "", codes.DeadlineExceeded}, {405, "", codes.FailedPrecondition},
		{412, "", codes.FailedPrecondition}, {499, "", codes.FailedPrecondition}, {505, "", codes.Internal},
		{599, "", codes.Internal}, {302, "", codes.Unknown}, {100, "", codes.Unknown},
	}
	for _, tt := range tests {
		if got := codeOfAnswer(tt.status, tt.code); got != tt.want {
			t.Errorf("codeOfAnswer(%d, %q) = %s, want %s", tt.status, tt.code, got, tt.want)
		}
	}
}
