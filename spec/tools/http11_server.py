# python3 -m http.server speaking HTTP/1.1 (keep-alive): http11_server.py DIR
import functools, http.server, sys
http.server.SimpleHTTPRequestHandler.protocol_version = "HTTP/1.1"
http.server.SimpleHTTPRequestHandler.disable_nagle_algorithm = True   # (short responses: no 40 ms stalls)
http.server.test(HandlerClass=functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1]),
                 port=0, bind="127.0.0.1")
