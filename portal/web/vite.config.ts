import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

// The offsite binary embeds dist/ and serves it at `/`; during `npm run dev` the API is proxied
// to a local `offsite demo` (OFFSITE_API, default port 8080).
export default defineConfig({
  plugins: [vue()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      output: {
        // Vendors change less often than the app: separate files keep their long cache.
        manualChunks: {
          echarts: ['echarts'],
          'element-plus': ['element-plus'],
          vue: ['vue', 'vue-router', 'vue-i18n'],
        },
      },
    },
  },
  server: {
    proxy: { '/api': process.env.OFFSITE_API ?? 'http://127.0.0.1:8080' },
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
})
