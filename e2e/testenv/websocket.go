package testenv

import (
	"fmt"
	"net/http"
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

// DialWS opens a WebSocket to testserver's /ws at host (through a load
// balancer), sending cookie when it is not nil, and returns it and the
// backend's first message: its name.
func DialWS(host string, cookie *http.Cookie) (*websocket.Conn, string, error) {
	h := http.Header{}
	if cookie != nil {
		h.Set("Cookie", cookie.String())
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial("ws://"+host+"/ws", h)
	if err != nil {
		return nil, "", err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, name, err := conn.ReadMessage()
	if err != nil {
		conn.Close()
		return nil, "", err
	}
	return conn, string(name), nil
}
