/* Compiled with mingw-w64 only: every value lwsp declares off Windows must equal
 * the value in Microsoft's headers.  `make spi-check` builds it; success is silence. */
#include "spi.h"
#define CHECK_(name, value) _Static_assert((long long)(name) == (long long)(value), #name);
SPI_ERRORS(CHECK_)
SPI_CONSTANTS(CHECK_)
SPI_IOCTLS(CHECK_)
int main(void) { return 0; }
