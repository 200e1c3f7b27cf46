// Times tdoku (https://github.com/t-dillon/tdoku, built from a checkout the benchmark is given; never vendored)
// on a puzzle file, as bench/engine.py times the fast core: whole passes over the puzzles until a time budget is
// spent, solving to the first solution. Reads one 81-character puzzle per line from stdin ('.' for a blank).
// Prints one line: puzzles solved, seconds, total guesses; then, with --solutions, each puzzle's solution.
//
//   tdoku_driver BUDGET_SECONDS [--solutions] < puzzles.txt
#include <tdoku.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s BUDGET_SECONDS [--solutions] < puzzles\n", argv[0]);
        return 2;
    }
    const double budget = std::atof(argv[1]);
    const bool print_solutions = argc > 2 && std::strcmp(argv[2], "--solutions") == 0;
    std::vector<std::string> puzzles;
    for (std::string line; std::getline(std::cin, line);) {
        if (line.size() >= 81) puzzles.push_back(line.substr(0, 81));
    }
    if (puzzles.empty()) {
        std::fprintf(stderr, "no puzzles on stdin\n");
        return 2;
    }
    std::vector<std::string> solutions(puzzles.size(), std::string(81, '.'));
    char solution[82] = {0};
    size_t guesses = 0, solved = 0, unsolved = 0;
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    double seconds = 0;
    for (int pass = 0; pass == 0 || seconds < budget; ++pass) {
        for (size_t i = 0; i < puzzles.size(); ++i) {
            size_t g = 0;
            size_t count = TdokuSolverDpllTriadSimd(puzzles[i].c_str(), 1, 0, solution, &g);
            guesses += g;
            if (count == 1) {
                ++solved;
                if (pass == 0) solutions[i].assign(solution, 81);
            } else {
                ++unsolved;
            }
        }
        seconds = std::chrono::duration<double>(clock::now() - start).count();
    }
    std::printf("%zu %.9f %zu %zu\n", solved + unsolved, seconds, guesses, unsolved);
    if (print_solutions) {
        for (const auto &s : solutions) std::printf("%s\n", s.c_str());
    }
    return 0;
}
