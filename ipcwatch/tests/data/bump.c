#include <stdio.h>
static int counter;
__attribute__((noinline)) void bump(int *p) { *p = *p + 1; }
int main(int argc, char **argv) { for (int i = 0; i < argc; i++) bump(&counter); printf("%d\n", counter); return 0; }
