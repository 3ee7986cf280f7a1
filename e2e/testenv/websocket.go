package testenv

import (
	"fmt"
	"time"

	"github.com/gorilla/websocket"
)

// Echo sends msg on a WebSocket to testserver's /ws and expects it back,
// within 5 s each way.
func Echo(conn *websocket.Conn, msg string) error {
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := conn.ReadMessage()
	if err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}
