/*
 * limited.c - runs a program with this process's linked token: the limited
 * (not elevated) token of an administrator, as a program a user starts
 * without "Run as administrator" gets it.  For the specs of lwsp's registry
 * hives on Windows (spec/02): lwsp's own host runs elevated under Wine.
 *
 *   limited.exe PROGRAM [ARG ...]    exits with the program's exit code
 */
#include <windows.h>
#include <stdio.h>
#include <wchar.h>

int wmain(int argc, wchar_t **argv) {
  HANDLE self, primary;
  TOKEN_LINKED_TOKEN linked;
  DWORD n, code = 1;
  STARTUPINFOW si;
  PROCESS_INFORMATION pi;
  wchar_t line[8192];
  size_t used = 0;
  if (argc < 2) { fwprintf(stderr, L"usage: limited.exe PROGRAM [ARG ...]\n"); return 2; }
  for (int i = 1; i < argc; i++) {
    int k = _snwprintf(line + used, sizeof line / sizeof line[0] - used, L"%s\"%s\"", i > 1 ? L" " : L"", argv[i]);
    if (k < 0) { fwprintf(stderr, L"limited.exe: command line too long\n"); return 2; }
    used += (size_t)k;
  }
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &self) ||
      !GetTokenInformation(self, TokenLinkedToken, &linked, sizeof linked, &n) ||
      !DuplicateTokenEx(linked.LinkedToken, MAXIMUM_ALLOWED, NULL, SecurityImpersonation, TokenPrimary, &primary)) {
    fwprintf(stderr, L"limited.exe: no linked token (error %lu)\n", GetLastError());
    return 2;
  }
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  if (!CreateProcessAsUserW(primary, NULL, line, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
    fwprintf(stderr, L"limited.exe: cannot start %s (error %lu)\n", argv[1], GetLastError());
    return 2;
  }
  WaitForSingleObject(pi.hProcess, INFINITE);
  GetExitCodeProcess(pi.hProcess, &code);
  return (int)code;
}
