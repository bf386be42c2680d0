/* The pod sandbox of the local node (localhost/scaledapp/pause:1, built by hack/images/build.sh).
 * It holds the pod's namespaces: it waits for signals, reaps every child that is re-parented to it
 * (it is PID 1 of the pod when the pod shares its process namespace) and exits 0 on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts("scaledapp-pause 1");
        return 0;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGCHLD) {
            while (waitpid(-1, NULL, WNOHANG) > 0) {}
        } else {
            return 0;
        }
    }
}
