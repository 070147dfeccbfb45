package fleet

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// UseLogger sends go-redis's own log lines (failed dials, pool and pub/sub
// reconnects) to log at WARN with component=go-redis, instead of go-redis's
// default of plain text on stderr, so that the process's logs stay JSON
// while Redis is down. go-redis holds one logger per process, so main calls
// this once; the lines name addresses, never the URL's password (go-redis
// never sees the URL, only the parsed options).
func UseLogger(log *slog.Logger) {
	redis.SetLogger(redisLogger{log})
}

// redisLogger is go-redis's logging interface over slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
