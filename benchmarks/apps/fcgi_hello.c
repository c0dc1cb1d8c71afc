/* The ceiling: hello world on libfcgi, with no interpreter in the way.
 *
 *   gcc -O2 -o fcgi_hello fcgi_hello.c -lfcgi -lpthread && ./fcgi_hello /tmp/hello.sock
 *
 * One process; THREADS threads each accept and serve (libfcgi's threaded example). A
 * thread serves its connection until nginx closes it, so with fastcgi_keep_conn one thread
 * per nginx connection (32 at most in the hello scenario) keeps any request from waiting
 * behind an idle kept connection. */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>

#define THREADS 32

static const char RESPONSE[] =
    "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";
static int listen_fd;

static void *serve(void *unused) {
    FCGX_Request request;
    (void)unused;
    FCGX_InitRequest(&request, listen_fd, 0);
    while (FCGX_Accept_r(&request) >= 0) {
        FCGX_PutStr(RESPONSE, sizeof RESPONSE - 1, request.out);
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    pthread_t threads[THREADS];
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET-PATH\n", argv[0]);
        return 2;
    }
    FCGX_Init();
    umask(0);
    listen_fd = FCGX_OpenSocket(argv[1], 512);
    if (listen_fd < 0) {
        perror("FCGX_OpenSocket");
        return 1;
    }
    for (int i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, serve, NULL);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    return 0;
}
