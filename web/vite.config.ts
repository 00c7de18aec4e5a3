// The console's build (issue 14): the bundle goes into the Go package that
// embeds it (internal/webui/dist), with fixed file names and no timestamps,
// so the same sources and lockfile always give the same bytes (the Go test
// TestBundleUpToDate rebuilds it and compares).
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "../internal/webui/dist",
    emptyOutDir: true,
    target: "es2022",
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/[name].js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/[name][extname]",
      },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
